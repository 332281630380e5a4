"""The Celery app factory: safe defaults, and every signal receiver connected in one place.

Defaults, each a decision from DESIGN.md: JSON only (pickle refused), late acks with
``reject_on_worker_lost`` (at-least-once), prefetch 1, the broker's visibility timeout from
settings, connection retry at start-up, no result backend unless one is configured.

Signal receivers are module-level functions connected with ``weak=False`` and a
``dispatch_uid`` by :func:`connect_signals`, so they cannot be garbage-collected away nor
connected twice.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import structlog
from celery import Celery, signals
from celery.app.task import Task

from sandbox_platform.builtin_tasks import register_builtin_tasks
from sandbox_platform.context import (
    CORRELATION_HEADER,
    MODE_HEADER,
    current_correlation_id,
    new_correlation_id,
    request_header,
    set_correlation_id,
)
from sandbox_platform.db.engine import dispose_engines
from sandbox_platform.logging import configure_logging
from sandbox_platform.redis_client import celery_url, redis_url, reset_clients
from sandbox_platform.settings import Settings, load_settings

__all__ = [
    "PlatformCelery",
    "connect_signals",
    "create_app",
    "forget_platform_settings",
    "platform_settings",
]

log = structlog.get_logger(__name__)

# The settings of the app this process runs (set by create_app; read by signal receivers,
# which Celery calls without telling them which app they serve).
_process_settings: Settings | None = None


class PlatformCelery(Celery):
    """A Celery app that knows its platform settings."""

    platform_settings: Settings


def platform_settings() -> Settings:
    """The settings of the app created in this process (or freshly loaded ones)."""
    return _process_settings if _process_settings is not None else load_settings()


def forget_platform_settings(settings: Settings | None = None) -> None:
    """Forget the settings create_app remembered (only if they are ``settings``, when given)."""
    global _process_settings
    if settings is None or _process_settings is settings:
        _process_settings = None


def _celery_config(settings: Settings) -> dict[str, Any]:
    coordination = redis_url(settings)
    broker = settings.broker_url or coordination
    backend = coordination if settings.result_backend == "redis" else settings.result_backend
    transport = {
        "visibility_timeout": settings.visibility_timeout,
        # kombu scans for unacked messages of dead workers every interval, but by default
        # only on every 10th call (100 s + the visibility timeout to recover a crashed job).
        "unacked_restore_interval": max(1.0, min(10.0, settings.visibility_timeout / 4)),
        "unacked_restore_throttle": 1,
    }
    return {
        "broker_url": celery_url(broker),
        "result_backend": celery_url(backend) if backend else None,
        "task_ignore_result": backend is None,
        "result_expires": 24 * 3600,
        "result_extended": backend is not None,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "event_serializer": "json",
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": 10,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "worker_disable_rate_limits": True,
        "task_default_queue": "sandbox_platform",
        "timezone": "UTC",
        "enable_utc": True,
        "sandbox_platform_redis_url": coordination,
        "sandbox_platform_key_prefix": settings.key_prefix,
        "sandbox_platform_mode": settings.mode.value,
        "sandbox_platform_leader_ttl": 1.5 * settings.heartbeat_interval,
    }


def create_app(settings: Settings | None = None, *, main: str = "sandbox_platform") -> Celery:
    """Build a Celery app configured from ``settings`` (read from the environment if None)."""
    global _process_settings
    settings = settings or load_settings()
    _process_settings = settings
    app = PlatformCelery(main, set_as_current=True)
    app.platform_settings = settings
    app.config_from_object(_celery_config(settings))
    register_builtin_tasks(app)
    connect_signals()
    return app


# -- signal receivers ----------------------------------------------------------------------


def _on_setup_logging(**_kwargs: Any) -> None:
    settings = platform_settings()
    configure_logging(settings.log_format, settings.log_level, task_events=settings.log_task_events)


def _on_before_task_publish(headers: dict[str, Any] | None = None, **_kwargs: Any) -> None:
    if headers is None:
        return
    if not headers.get(CORRELATION_HEADER):
        headers[CORRELATION_HEADER] = current_correlation_id() or new_correlation_id()
    headers.setdefault(MODE_HEADER, platform_settings().mode.value)


def _on_task_prerun(task_id: str = "", task: Task[Any, Any] | None = None, **_k: Any) -> None:
    structlog.contextvars.clear_contextvars()
    if task is None:
        return
    correlation_id = request_header(task.request, CORRELATION_HEADER) or new_correlation_id()
    set_correlation_id(correlation_id)
    structlog.contextvars.bind_contextvars(
        task_id=task_id,
        task_name=task.name,
        attempt=int(getattr(task.request, "retries", 0) or 0) + 1,
    )


def _on_task_postrun(**_kwargs: Any) -> None:
    set_correlation_id(None)
    structlog.contextvars.clear_contextvars()


def _message_record(message: Any) -> dict[str, Any]:
    """What we keep of a message the worker could not run (headers and decoded body)."""
    headers = dict(getattr(message, "headers", None) or {})
    try:
        body: Any = message.decode()
    except Exception:
        raw = getattr(message, "body", b"")
        body = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    args, kwargs = ([], {})
    if isinstance(body, list | tuple) and len(body) >= 2:
        args, kwargs = list(body[0]), dict(body[1])
    return {
        "task": headers.get("task"),
        "args": args,
        "kwargs": kwargs,
        "headers": headers,
        "body": body if not args and not kwargs else None,
    }


def _dead_letter_message(reason: str, message: Any, exc: Any) -> None:
    try:
        from sandbox_platform.deadletters import store_dead_letter

        record = _message_record(message)
        headers = record["headers"]
        store_dead_letter(
            platform_settings().active_database_url,
            task_id=str(headers.get("id") or ""),
            task_name=str(headers.get("task") or "?"),
            reason=reason,
            detail=repr(exc),
            message=record,
            correlation_id=headers.get(CORRELATION_HEADER),
        )
    except Exception:
        log.exception("could not dead-letter a message", reason=reason)


def _on_task_unknown(message: Any = None, exc: Any = None, **_kwargs: Any) -> None:
    _dead_letter_message("unknown_task", message, exc)


def _on_task_rejected(message: Any = None, exc: Any = None, **_kwargs: Any) -> None:
    _dead_letter_message("rejected", message, exc)


def _on_worker_process_init(**_kwargs: Any) -> None:
    dispose_engines()
    reset_clients()


def _on_worker_init(sender: Any = None, **_kwargs: Any) -> None:
    from sandbox_platform.live_gate import check_live_worker

    app = getattr(sender, "app", None)
    if isinstance(app, Celery):
        check_live_worker(platform_settings(), app)


def _on_worker_ready(sender: Any = None, **_kwargs: Any) -> None:
    from sandbox_platform.worker_services import start_worker_services

    settings = platform_settings()
    hostname = str(getattr(sender, "hostname", None) or socket.gethostname())
    log.info("worker ready", hostname=hostname, pid=os.getpid(), mode=settings.mode.value)
    start_worker_services(hostname, getattr(sender, "app", None))


def _on_worker_shutting_down(**_kwargs: Any) -> None:
    """Before the consumer stops: mark the jobs kombu is about to hand back as clean."""
    from sandbox_platform.poison import held_task_ids, mark_clean_restores
    from sandbox_platform.runtime import installed_runtime

    rt = installed_runtime()
    if rt is None:
        return
    try:
        marked = mark_clean_restores(rt.redis, rt.settings.key_prefix, held_task_ids())
        log.info("warm shutdown: held jobs marked as clean restores", jobs=marked)
    except Exception:
        log.exception("could not mark held jobs before shutdown")


def _on_worker_shutdown(**_kwargs: Any) -> None:
    """Warm shutdown: stop the side services, write every buffered record."""
    from sandbox_platform.runtime import flush_runtime
    from sandbox_platform.worker_services import stop_worker_services

    stop_worker_services()
    flush_runtime()


def _on_worker_process_shutdown(**_kwargs: Any) -> None:
    from sandbox_platform.runtime import flush_runtime

    flush_runtime()


_RECEIVERS = (
    (signals.setup_logging, _on_setup_logging),
    (signals.before_task_publish, _on_before_task_publish),
    (signals.task_prerun, _on_task_prerun),
    (signals.task_postrun, _on_task_postrun),
    (signals.worker_process_init, _on_worker_process_init),
    (signals.task_unknown, _on_task_unknown),
    (signals.task_rejected, _on_task_rejected),
    (signals.worker_init, _on_worker_init),
    (signals.worker_ready, _on_worker_ready),
    (signals.worker_shutting_down, _on_worker_shutting_down),
    (signals.worker_shutdown, _on_worker_shutdown),
    (signals.worker_process_shutdown, _on_worker_process_shutdown),
)


def connect_signals() -> None:
    """Connect every receiver once, strongly referenced, each with its own dispatch_uid."""
    for signal, receiver in _RECEIVERS:
        signal.connect(receiver, weak=False, dispatch_uid=f"sandbox_platform.{receiver.__name__}")
