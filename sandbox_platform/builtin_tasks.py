"""Tasks every platform app has: the beat heartbeat, the readiness canary, housekeeping.

Registered by :func:`~sandbox_platform.celery_app.create_app` on every app (workers, beat
and enqueuing apps alike), so their names are always known.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from celery import Celery, Task
from sqlalchemy import delete

from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import Alert, DryRunEvent, HeartbeatTick, JobRun, utcnow

__all__ = [
    "CANARY_TASK",
    "HEARTBEAT_TASK",
    "HOUSEKEEPING_TASK",
    "canary_key",
    "register_builtin_tasks",
]

log = structlog.get_logger(__name__)

HEARTBEAT_TASK = "sandbox_platform.heartbeat"
CANARY_TASK = "sandbox_platform.canary"
HOUSEKEEPING_TASK = "sandbox_platform.housekeeping"


def canary_key(prefix: str, token: str) -> str:
    return f"{prefix}:canary:{token}"


def _heartbeat(task: Task[Any, Any], tick_id: str | None = None) -> bool:
    from sandbox_platform.runtime import runtime

    tick = tick_id or getattr(task.request, "tick_id", None) or f"manual:{task.request.id}"
    recorded = runtime().heartbeat.record_tick(str(tick), worker=task.request.hostname)
    log.info("heartbeat tick", tick_id=tick, recorded=recorded)
    return recorded


def _canary(token: str) -> str:
    from sandbox_platform.runtime import runtime

    rt = runtime()
    rt.redis.set(canary_key(rt.settings.key_prefix, token), "ok", ex=120)
    return token


def _housekeeping(tick_id: str | None = None) -> dict[str, int]:
    """Delete records older than the retention period; return how many per table.

    One run per tick id across the cluster (a Redis claim), whichever beat sent it.
    """
    from sandbox_platform.runtime import runtime

    rt = runtime()
    settings = rt.settings
    claim = f"{settings.key_prefix}:housekeeping:{tick_id}"
    if tick_id and not rt.redis.set(claim, "1", nx=True, ex=7 * 24 * 3600):
        log.info("housekeeping tick already ran", tick_id=tick_id)
        return {}
    cutoff = utcnow() - timedelta(days=settings.retention_days)
    deleted: dict[str, int] = {}
    with session_scope(settings.active_database_url) as session:
        for model, column in (
            (JobRun, JobRun.started_at),
            (DryRunEvent, DryRunEvent.created_at),
            (HeartbeatTick, HeartbeatTick.created_at),
            (Alert, Alert.created_at),
        ):
            result = session.execute(delete(model).where(column < cutoff))
            deleted[model.__tablename__] = int(getattr(result, "rowcount", 0) or 0)
    log.info("housekeeping done", tick_id=tick_id, deleted=deleted)
    return deleted


def register_builtin_tasks(app: Celery) -> None:
    """Declare the platform's own tasks on ``app`` (idempotent)."""
    if getattr(app, "_sp_builtin_tasks", False):
        return
    app._sp_builtin_tasks = True  # type: ignore[attr-defined]
    app.task(name=HEARTBEAT_TASK, bind=True, shared=False, ignore_result=True)(_heartbeat)
    app.task(name=CANARY_TASK, shared=False, ignore_result=True)(_canary)
    app.task(name=HOUSEKEEPING_TASK, shared=False, ignore_result=True)(_housekeeping)
