"""A job its supervisor stopped for running past its time limit: dead-lettered ``timed_out``
(with its message, for replay), recorded as a run, alerted, and marked so that the broker's
redelivery of it is dropped rather than run again."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog

from sandbox_platform.core.context import CORRELATION_HEADER
from sandbox_platform.core.redis_client import get_redis, redis_url
from sandbox_platform.core.settings import Settings
from sandbox_platform.db.deadletters import store_dead_letter
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import JobRun
from sandbox_platform.guards.deadletter import mark_dead_lettered
from sandbox_platform.ops.alert_wiring import build_dispatcher
from sandbox_platform.ops.alerts import Alert, Severity

__all__ = ["record_timeout"]

log = structlog.get_logger(__name__)


def record_timeout(settings: Settings, info: dict[str, Any]) -> None:
    """Store what the deadline file of a stopped job says (see the time-limit guard)."""
    message = dict(info.get("message") or {})
    task_id, task_name = str(info.get("task_id") or ""), str(info.get("task_name") or "?")
    correlation_id = (message.get("headers") or {}).get(CORRELATION_HEADER)
    detail = (
        f"ran longer than its time limit of {info.get('limit')}s; "
        "its consumer was stopped and started again"
    )
    client = get_redis(redis_url(settings))
    mark_dead_lettered(client, settings.key_prefix, task_id, "timed_out")
    store_dead_letter(
        settings.active_database_url,
        task_id=task_id,
        task_name=task_name,
        reason="timed_out",
        detail=detail,
        message=message,
        correlation_id=correlation_id,
    )
    now = datetime.now(UTC)
    with session_scope(settings.active_database_url) as session:
        session.add(
            JobRun(
                task_id=task_id[:64],
                task_name=task_name[:255],
                correlation_id=correlation_id,
                mode=settings.mode.value,
                state="timed_out",
                attempt=1,
                started_at=now,
                finished_at=now,
                error=detail,
            )
        )
    alerts = build_dispatcher(settings, client)
    try:
        context = {"task": task_name, "task_id": task_id, "reason": "timed_out"}
        alert = Alert(Severity.ERROR, "task_failed", f"{task_name} timed out: {detail}", context)
        if correlation_id:
            alert = Alert(alert.severity, alert.kind, alert.message, context, correlation_id)
        alerts.emit(alert)
    finally:
        alerts.close(timeout=10)
    log.error("job stopped past its time limit; dead-lettered", task_id=task_id, task=task_name)
