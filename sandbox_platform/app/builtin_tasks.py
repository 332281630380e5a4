"""Tasks every platform app has: the beat heartbeat, the readiness canary, housekeeping and
the queue watch.

Registered by :func:`~sandbox_platform.app.factory.create_app` on every app (workers, beat
and enqueuing apps alike), so their names are always known. Each reaches its app's runtime
through the task (``task.app``), never through a global.
"""

from __future__ import annotations

from typing import Any

import structlog
from celery import Celery, Task

from sandbox_platform.app.runtime import runtime_for
from sandbox_platform.ops.backlog import broker_queues, check_backlog, known_queues
from sandbox_platform.ops.readiness_checks import CANARY_TASK, canary_key
from sandbox_platform.ops.retention import purge_expired_records

__all__ = [
    "CANARY_TASK",
    "HEARTBEAT_TASK",
    "HOUSEKEEPING_TASK",
    "QUEUE_WATCH_TASK",
    "canary_key",
    "register_builtin_tasks",
]

log = structlog.get_logger(__name__)

HEARTBEAT_TASK = "sandbox_platform.heartbeat"
HOUSEKEEPING_TASK = "sandbox_platform.housekeeping"
QUEUE_WATCH_TASK = "sandbox_platform.queue_watch"


def _heartbeat(task: Task[Any, Any], tick_id: str | None = None) -> bool:
    tick = tick_id or getattr(task.request, "tick_id", None) or f"manual:{task.request.id}"
    heartbeat = runtime_for(task.app).heartbeat
    recorded = heartbeat.record_tick(str(tick), worker=task.request.hostname)
    log.info("heartbeat tick", tick_id=tick, recorded=recorded)
    return recorded


def _canary(task: Task[Any, Any], token: str) -> str:
    rt = runtime_for(task.app)
    rt.redis.set(canary_key(rt.settings.key_prefix, token), "ok", ex=120)
    return token


def _housekeeping(task: Task[Any, Any], tick_id: str | None = None) -> dict[str, int]:
    """Delete records past their retention, purge old dead letters' arguments; return how
    many rows per table (:mod:`sandbox_platform.ops.retention`).

    One run per tick id across the cluster (a Redis claim), whichever beat sent it.
    """
    rt = runtime_for(task.app)
    settings = rt.settings
    claim = f"{settings.key_prefix}:housekeeping:{tick_id}"
    if tick_id and not rt.redis.set(claim, "1", nx=True, ex=7 * 24 * 3600):
        log.info("housekeeping tick already ran", tick_id=tick_id)
        return {}
    deleted = purge_expired_records(
        settings.active_database_url, settings.retention_days, settings.dead_letter_retention_days
    )
    log.info("housekeeping done", tick_id=tick_id, deleted=deleted)
    return deleted


def _queue_watch(task: Task[Any, Any], tick_id: str | None = None) -> dict[str, Any]:
    """Alert on a queue whose backlog or oldest job is over its limit (once per beat slot)."""
    rt = runtime_for(task.app)
    settings = rt.settings
    stats = check_backlog(
        rt.alerts,
        broker_queues(settings),
        known_queues(task.app),
        threshold=settings.queue_backlog_threshold,
        max_age=settings.queue_max_age,
    )
    return {stat.queue: {"length": stat.length, "oldest_age": stat.oldest_age} for stat in stats}


def register_builtin_tasks(app: Celery) -> None:
    """Declare the platform's own tasks on ``app`` (idempotent)."""
    if getattr(app, "_sp_builtin_tasks", False):
        return
    app._sp_builtin_tasks = True  # type: ignore[attr-defined]
    app.task(name=HEARTBEAT_TASK, bind=True, shared=False, ignore_result=True)(_heartbeat)
    app.task(name=CANARY_TASK, bind=True, shared=False, ignore_result=True)(_canary)
    app.task(name=HOUSEKEEPING_TASK, bind=True, shared=False, ignore_result=True)(_housekeeping)
    app.task(name=QUEUE_WATCH_TASK, bind=True, shared=False, ignore_result=True)(_queue_watch)
