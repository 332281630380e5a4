"""The platform's status in the seed's shape, read from the real system."""

from __future__ import annotations

from typing import Any

from celery import Celery
from sqlalchemy import func, select

from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import Alert, JobRun
from sandbox_platform.runtime import Runtime

__all__ = ["platform_status", "queue_length"]


def queue_length(rt: Runtime, app: Celery) -> int:
    """Jobs waiting in the app's default queue (the Redis list of that name)."""
    return int(rt.redis.llen(str(app.conf.task_default_queue)))


def _count(url: str, model: type[JobRun] | type[Alert], *where: Any) -> int:
    with session_scope(url) as session:
        query = select(func.count()).select_from(model)
        if where:
            query = query.where(*where)
        return int(session.scalar(query) or 0)


def platform_status(rt: Runtime, app: Celery, *, readiness: bool = True) -> dict[str, Any]:
    """readiness, heartbeat, governor, worker_queue_length, completed_jobs, alerts,
    idempotent_operations — the keys the seed's ``get_status()`` returned."""
    url = rt.settings.active_database_url
    status: dict[str, Any] = {}
    if readiness:
        from sandbox_platform.readiness import ReadinessChecker

        status["readiness"] = ReadinessChecker(rt.settings, app).get_status()
    status.update(
        heartbeat=rt.heartbeat.status(),
        governor=rt.governor.stats(),
        worker_queue_length=queue_length(rt, app),
        completed_jobs=_count(url, JobRun, JobRun.state == "succeeded"),
        alerts=_count(url, Alert),
        idempotent_operations=rt.idempotency.count(),
    )
    return status
