"""structlog set-up: one pipeline for our logs and for Celery's, JSON or console, redacted.

``merge_contextvars`` is the first processor, so the correlation id and the task fields bound
at task start appear on every line; the redaction processor is the last before rendering,
so nothing secret reaches a handler. Nothing happens at import: call
:func:`configure_logging`.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from sandbox_platform.core.redaction import redact

__all__ = ["configure_logging", "logging_configured", "redact_processor"]


def redact_processor(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """Mask secrets in every field of the event (keys that name secrets, URLs, cards)."""
    return redact(event_dict)  # type: ignore[no-any-return]


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]


def _renderer(log_format: str) -> Processor:
    if log_format == "console":
        return structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    return structlog.processors.JSONRenderer(default=str)


#: Celery's per-task "received" / "succeeded" lines: two lines per job on the hot path.
TASK_EVENT_LOGGERS = ("celery.app.trace", "celery.worker.strategy")


#: the name of the platform's handler on the root logger
HANDLER_NAME = "sandbox_platform"


def logging_configured() -> bool:
    """True when :func:`configure_logging` has run in this process (its handler is on the root
    logger)."""
    return any(h.get_name() == HANDLER_NAME for h in logging.getLogger().handlers)


def configure_logging(
    log_format: str = "json",
    level: str = "INFO",
    stream: Any = None,
    *,
    cache: bool = True,
    task_events: bool = False,
) -> None:
    """Route structlog and the standard library (Celery included) through one pipeline."""
    shared = _shared_processors()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=cache,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_processor,
            _renderer(log_format),
        ],
    )
    if stream is None:  # never a stream Celery redirected into logging (a loop)
        stream = sys.__stderr__ if type(sys.stderr).__name__ == "LoggingProxy" else sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.set_name(HANDLER_NAME)
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == HANDLER_NAME:
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    quiet = max(logging.WARNING, logging.getLevelName(level))
    for noisy in ("kombu", "amqp", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(quiet)
    for name in TASK_EVENT_LOGGERS:  # failures are errors and still pass
        logging.getLogger(name).setLevel(logging.NOTSET if task_events else quiet)
