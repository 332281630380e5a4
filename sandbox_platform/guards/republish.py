"""Publishing the running job again (a retry, a deferral, a postponed dead letter) without
ever losing it.

Celery answers a retry whose publish fails (the broker is restarting) with
``Reject(requeue=False)``: the message is acknowledged and the job is gone. Here a failed
publish becomes ``Reject(requeue=True)`` instead: the delivery goes back to its queue, or, when
the broker cannot take even that, stays unacknowledged and is redelivered after the visibility
timeout. Either way the job runs again; nothing is lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

import structlog
from celery.exceptions import Reject

from sandbox_platform.guards.base import Job

__all__ = ["publish_again", "retry_or_requeue"]

log = structlog.get_logger(__name__)


def _requeue(job: Job, what: str, exc: Exception) -> Reject:
    log.error(
        "could not publish the job again; its delivery goes back to the queue",
        what=what,
        task_id=job.task_id,
        error=" ".join(str(exc).split())[:300] or type(exc).__name__,
    )
    return Reject(exc, requeue=True)


def publish_again(job: Job, *, countdown: float, headers: Mapping[str, Any], what: str) -> None:
    """Publish ``job`` again (same id, same retry count) with ``countdown``."""
    try:
        job.task.requeue(job.args, job.kwargs, countdown=countdown, headers=headers)
    except Exception as exc:
        raise _requeue(job, what, exc) from exc


def retry_or_requeue(
    job: Job, exc: BaseException, countdown: float, max_retries: int | None
) -> NoReturn:
    """Celery's retry; if its publish fails, requeue this delivery instead of dropping it."""
    try:
        raise job.task.retry(exc=exc, countdown=countdown, max_retries=max_retries)
    except Reject as reject:
        if getattr(reject, "requeue", False):
            raise
        reason = getattr(reject, "reason", None)
        cause = reason if isinstance(reason, Exception) else reject
        raise _requeue(job, "retry", cause) from cause
