"""The platform's status in the seed's shape, read from the real system.

Used by ``sandbox-platform status`` and by the seed facade's ``get_status()``.
"""

from __future__ import annotations

from typing import Any

import redis
from celery import Celery
from sqlalchemy import func, select

from sandbox_platform.coordination.governor import Governor
from sandbox_platform.coordination.idempotency import IdempotencyStore
from sandbox_platform.core.settings import Settings
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import JobRun
from sandbox_platform.ops.alerts import DatabaseSink
from sandbox_platform.ops.backlog import QueueSource, broker_queues, default_queue, queue_stats
from sandbox_platform.ops.heartbeat import Heartbeat
from sandbox_platform.ops.readiness import ReadinessChecker

__all__ = ["completed_jobs", "platform_status", "queue_length"]


def queue_length(broker: QueueSource, queue: str) -> int:
    """Jobs waiting in ``queue``, over kombu's priority lists, in one round trip."""
    return queue_stats(broker, queue).length


def completed_jobs(database_url: str) -> int:
    """Job runs in state ``succeeded`` (guarded tasks record them, in batches)."""
    query = select(func.count()).select_from(JobRun).where(JobRun.state == "succeeded")
    with session_scope(database_url) as session:
        return int(session.scalar(query) or 0)


def platform_status(
    settings: Settings,
    app: Celery,
    client: redis.Redis,
    checker: ReadinessChecker | None = None,
) -> dict[str, Any]:
    """readiness, heartbeat, governor, worker_queue_length, completed_jobs, alerts,
    idempotent_operations — the keys the seed's ``get_status()`` returned. ``client`` is the
    coordination Redis."""
    url = settings.active_database_url
    heartbeat = Heartbeat(
        client, interval_seconds=settings.heartbeat_interval, prefix=settings.key_prefix
    )
    return {
        "readiness": (checker or ReadinessChecker(settings, app)).get_status(),
        "heartbeat": heartbeat.status(),
        "governor": Governor(client, settings.key_prefix).stats(),
        "worker_queue_length": queue_length(broker_queues(settings), default_queue(app)),
        "completed_jobs": completed_jobs(url),
        "alerts": DatabaseSink(url).count(),
        "idempotent_operations": IdempotencyStore(client, settings.key_prefix).count(),
    }
