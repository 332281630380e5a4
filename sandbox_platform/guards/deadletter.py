"""Durable dead letters: a final failure is acknowledged only once its dead letter is stored.

When the database cannot take the dead letter, the message is published again in a few
seconds carrying the decision (header ``sp_final_failure``) and the delivery is acknowledged:
the next delivery stores the dead letter (and raises its alert) without running the job again.
Once stored, a Redis marker (``<prefix>:dl:{<task id>}``, a week) says so: should the
acknowledgement be lost with its worker, the redelivery is dropped instead of run again, and
it does not count towards poison.
"""

from __future__ import annotations

from typing import Any

import redis
import structlog
from sqlalchemy.exc import SQLAlchemyError

from sandbox_platform.core.context import FINAL_HEADER
from sandbox_platform.core.redis_client import REDIS_ERRORS
from sandbox_platform.db.deadletters import store_dead_letter
from sandbox_platform.guards.base import Job, Outcome, Services
from sandbox_platform.guards.republish import publish_again

__all__ = ["RETRY_STORE_SECONDS", "DeadLetters"]

log = structlog.get_logger(__name__)

#: how soon a dead letter the database refused is tried again
RETRY_STORE_SECONDS = 5.0
MARKER_TTL_SECONDS = 7 * 24 * 3600


def dead_letter_marker(prefix: str, task_id: str) -> str:
    """The Redis key saying ``task_id`` is stored as a dead letter (a redelivery is dropped)."""
    return f"{prefix}:dl:{{{task_id}}}"


def mark_dead_lettered(client: redis.Redis, prefix: str, task_id: str, reason: str) -> None:
    client.set(dead_letter_marker(prefix, task_id), reason, ex=MARKER_TTL_SECONDS)


class DeadLetters:
    """Stores the dead letters of one process's jobs, durably (see the module docstring)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._database_url = services.settings.active_database_url

    def _marker(self, task_id: str) -> str:
        return dead_letter_marker(self.services.prefix, task_id)

    def pending(self, job: Job) -> Outcome | None:
        """The outcome of a delivery whose final failure was decided before, if any."""
        decided = job.header(FINAL_HEADER)
        if isinstance(decided, dict):  # the database refused it last time: store it now
            return Outcome.dead_letter(
                str(decided.get("reason") or "failed"),
                detail=str(decided.get("detail") or ""),
                failed=bool(decided.get("failed")),
                record=False,
                context=dict(decided.get("context") or {}),
            )
        if not (job.request.delivery_info or {}).get("redelivered"):
            return None
        try:
            stored = self.services.redis.exists(self._marker(job.task_id))
        except REDIS_ERRORS:
            return None
        if stored:
            log.warning(
                "redelivered after its dead letter was stored; dropped", task_id=job.task_id
            )
            return Outcome.dead_letter("already_dead_lettered", failed=False, record=False)
        return None

    def store(
        self,
        job: Job,
        outcome: Outcome,
        message: dict[str, Any],
        correlation_id: str | None,
        *,
        postpone: bool = True,
    ) -> bool:
        """True when the dead letter is stored; False when it was postponed (the message is
        published again carrying the decision; acknowledge this delivery), or, without
        ``postpone``, not stored (the database refused it; the caller decides)."""
        if outcome.reason == "already_dead_lettered":
            return True
        try:
            store_dead_letter(
                self._database_url,
                task_id=job.task_id,
                task_name=job.name,
                reason=outcome.reason,
                detail=outcome.detail,
                message=message,
                correlation_id=correlation_id,
            )
        except (SQLAlchemyError, OSError) as exc:
            if postpone:
                self._postpone(job, outcome, exc)
            else:
                log.error("dead letter not stored (database)", error=" ".join(str(exc).split()))
            return False
        try:
            mark_dead_lettered(
                self.services.redis, self.services.prefix, job.task_id, outcome.reason
            )
        except REDIS_ERRORS:
            log.warning("dead letter stored; its redelivery marker could not be set")
        return True

    def _postpone(self, job: Job, outcome: Outcome, exc: BaseException) -> None:
        log.error(
            "dead letter not stored (database); the job is published again to store it",
            reason=outcome.reason,
            error=" ".join(str(exc).split())[:300],
        )
        decided = {
            "reason": outcome.reason,
            "detail": outcome.detail,
            "failed": outcome.failed,
            "context": dict(outcome.context),
        }
        countdown = min(RETRY_STORE_SECONDS, self.services.settings.redelivery_timeout * 0.5)
        headers = {**job.headers, FINAL_HEADER: decided}
        publish_again(job, countdown=countdown, headers=headers, what="postponed dead letter")
