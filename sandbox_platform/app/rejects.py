"""Messages a worker cannot run (unknown task, rejected, malformed, undecodable) become dead
letters with everything that arrived: headers, the decoded body, or the raw bytes base64.
Nothing a worker receives is dropped silently."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import structlog
from celery import Celery

from sandbox_platform.app.runtime import Runtime, runtime_for
from sandbox_platform.core.apps import settings_of
from sandbox_platform.core.context import CORRELATION_HEADER, request_header
from sandbox_platform.db.deadletters import store_dead_letter
from sandbox_platform.db.models import JobRun
from sandbox_platform.guards.events import JobDeadLettered, JobFinished

__all__ = ["dead_letter_message", "dead_letter_raw", "message_record", "record_expired"]

log = structlog.get_logger(__name__)


def _raw(data: Any) -> dict[str, Any]:
    """Bytes kept safely: as text when they are UTF-8 JSON-able, else base64."""
    if isinstance(data, bytes):
        try:
            return {"body_text": data.decode("utf-8")}
        except UnicodeDecodeError:
            return {"body_base64": base64.b64encode(data).decode()}
    return {"body_text": str(data)}


def _args(body: Any) -> tuple[list[Any], dict[str, Any]] | None:
    if isinstance(body, list | tuple) and len(body) >= 2:
        args, kwargs = body[0], body[1]
        if isinstance(args, list | tuple) and isinstance(kwargs, dict):
            return list(args), dict(kwargs)
    return None


def message_record(message: Any) -> dict[str, Any]:
    """What we keep of a message the worker could not run (headers and the body)."""
    headers = dict(getattr(message, "headers", None) or {})
    record: dict[str, Any] = {"task": headers.get("task"), "headers": headers}
    try:
        body: Any = message.decode()
        json.dumps(body)
    except Exception:
        return {**record, "args": [], "kwargs": {}, **_raw(getattr(message, "body", b""))}
    unpacked = _args(body)
    if unpacked is None:
        return {**record, "args": [], "kwargs": {}, "body": body}
    return {**record, "args": unpacked[0], "kwargs": unpacked[1], "body": None}


def _store(app: Celery | None, reason: str, record: dict[str, Any], exc: Any) -> None:
    headers = record.get("headers") or {}
    event = JobDeadLettered(
        str(headers.get("task") or record.get("task") or "?"),
        str(headers.get("id") or ""),
        headers.get(CORRELATION_HEADER),
        reason=reason,
        detail=repr(exc),
    )
    store_dead_letter(
        settings_of(app).active_database_url,
        task_id=event.task_id or "",
        task_name=event.task,
        reason=reason,
        detail=event.detail,
        message=record,
        correlation_id=event.correlation_id,
    )
    if app is not None:
        runtime_for(app).events.emit(event)


def dead_letter_message(app: Celery | None, reason: str, message: Any, exc: Any) -> None:
    """Store ``message`` as a dead letter (errors are logged, never raised)."""
    try:
        _store(app, reason, message_record(message), exc)
    except Exception:
        log.exception("could not dead-letter a message", reason=reason)


def dead_letter_raw(app: Celery | None, queue: str, raw: bytes, exc: BaseException) -> None:
    """Store an element of ``queue`` that is not a message at all (raises when it cannot:
    the transport then keeps the bytes aside)."""
    record = {"task": None, "headers": {}, "args": [], "kwargs": {}, "queue": queue, **_raw(raw)}
    _store(app, "undecodable", record, exc)


def record_expired(runtime: Runtime, request: Any) -> None:
    """Record a job that expired before a worker could run it (a run in state ``expired``)."""
    now = datetime.now(UTC)
    task_name = str(getattr(request, "task", None) or getattr(request, "task_name", None) or "?")
    task_id = str(getattr(request, "id", "") or "")
    correlation_id = request_header(request, CORRELATION_HEADER)
    runtime.recorder.add(
        JobRun,
        task_id=task_id,
        task_name=task_name,
        correlation_id=correlation_id,
        mode=runtime.settings.mode.value,
        state="expired",
        attempt=1,
        started_at=now,
        finished_at=now,
        duration_ms=0.0,
        error=None,
        result=None,
    )
    runtime.events.emit(JobFinished(task_name, task_id, correlation_id, state="expired"))
    log.warning("job expired before it ran; recorded", task_id=task_id, task_name=task_name)
