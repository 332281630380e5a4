"""Correlation ids: one id follows a piece of work through every task, alert and row.

The id lives in a :class:`contextvars.ContextVar` and is mirrored into structlog's
contextvars so every log line carries it. Celery propagation (publish header -> task start)
is wired in :mod:`sandbox_platform.app.signals`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import structlog

from sandbox_platform.core.jobscope import inherited_job

__all__ = [
    "ADMITTED_HEADER",
    "ADMIT_HEADER",
    "CORRELATION_HEADER",
    "DELIVERY_HEADER",
    "ENQUEUED_HEADER",
    "FINAL_HEADER",
    "IDEMPOTENCY_HEADER",
    "MODE_HEADER",
    "SEALED_MODE_SUFFIX",
    "bind_correlation_id",
    "current_correlation_id",
    "message_mode",
    "new_correlation_id",
    "request_header",
    "sealed_mode",
    "set_correlation_id",
    "stamp_mode",
]

CORRELATION_HEADER = "sp_correlation_id"
MODE_HEADER = "sp_mode"
IDEMPOTENCY_HEADER = "sp_idempotency_key"
#: when the message was published (epoch seconds): the age of the oldest waiting job
ENQUEUED_HEADER = "sp_enqueued_at"
#: a final failure decided but not yet stored as a dead letter (the database refused it)
FINAL_HEADER = "sp_final_failure"
#: the admission a job asks for, planned at enqueue (the transport admits it with the fetch)
ADMIT_HEADER = "sp_admit"
#: the admission the transport made with the fetch: [status, token, result, wait_us, resource];
#: set only by the transport on delivery, stripped from every message published
ADMITTED_HEADER = "sp_admitted"
#: the delivery tag, when this process's transport delivered the message and will acknowledge
#: it (broker/ack_riders.py); set only by the transport on delivery, stripped from every message
#: published
DELIVERY_HEADER = "sp_delivery"

_correlation_id: ContextVar[str | None] = ContextVar("sp_correlation_id", default=None)


def request_header(request: Any, name: str) -> Any:
    """A custom message header of a Celery request: Celery exposes it as an attribute of
    ``task.request`` (protocol 2), or inside its ``headers`` dict."""
    value = getattr(request, name, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(name)
    return value


def new_correlation_id() -> str:
    """A fresh correlation id (32 hex digits): what :func:`bind_correlation_id` binds when it
    is given none."""
    return uuid.uuid4().hex


def current_correlation_id() -> str | None:
    """The correlation id bound in this context (or inherited by a spawned child of a job)."""
    value = _correlation_id.get()
    if value is None:
        inherited = inherited_job()
        return inherited.correlation_id if inherited is not None else None
    return value


def set_correlation_id(correlation_id: str | None) -> None:
    """Bind (or with None, clear) the id for the rest of this context, logs included."""
    _correlation_id.set(correlation_id)
    if correlation_id is None:
        structlog.contextvars.unbind_contextvars("correlation_id")
    else:
        structlog.contextvars.bind_contextvars(correlation_id=correlation_id)


@contextmanager
def bind_correlation_id(correlation_id: str | None = None) -> Iterator[str]:
    """Bind ``correlation_id`` (or a fresh one) for the block; restore the previous after.

    Use it in the enqueuing app around the work of one request::

        with bind_correlation_id(request.headers.get("X-Request-Id")) as cid:
            charge_card.delay(order_id)
    """
    previous = _correlation_id.get()
    value = correlation_id or new_correlation_id()
    set_correlation_id(value)
    try:
        yield value
    finally:
        set_correlation_id(previous)


#: appended to the mode header of a message with sealed arguments: a worker of a release
#: before sealing (0.2) reads another mode and dead-letters it ``wrong_mode`` unrun, instead of
#: handing an envelope to the body as the value (docs/secrets.md)
SEALED_MODE_SUFFIX = "+sealed"


def sealed_mode(mode: str) -> str:
    """The mode header of a message that carries sealed arguments."""
    return mode + SEALED_MODE_SUFFIX


def message_mode(header: Any) -> str | None:
    """The mode a message was enqueued in, from its mode header (sealed or not)."""
    if not header:
        return None
    return str(header).removesuffix(SEALED_MODE_SUFFIX)


def stamp_mode(headers: MutableMapping[str, Any], mode: str) -> None:
    """The one place a message gets its mode header: the publishing app's ``mode``, unless the
    message carries one already (a re-publish keeps the job's own)."""
    headers.setdefault(MODE_HEADER, mode)
