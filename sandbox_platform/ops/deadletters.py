"""Replaying a dead letter: publish the stored job again, same idempotency key and
correlation id, so an effect that already happened is not repeated."""

from __future__ import annotations

import structlog
from celery import Celery

from sandbox_platform.core.context import CORRELATION_HEADER, IDEMPOTENCY_HEADER
from sandbox_platform.core.errors import PlatformError
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import DeadLetter, utcnow

__all__ = ["replay_dead_letter"]

log = structlog.get_logger(__name__)


def replay_dead_letter(app: Celery, database_url: str, dead_letter_id: int) -> str:
    """Publish the stored job again (same idempotency key and correlation id); new task id."""
    with session_scope(database_url) as session:
        row = session.get(DeadLetter, dead_letter_id, with_for_update=True)
        if row is None:
            raise PlatformError(f"no dead letter with id {dead_letter_id}")
        if row.purged_at is not None:
            raise PlatformError(
                f"dead letter {dead_letter_id} cannot be replayed: its arguments were purged "
                f"on {row.purged_at:%Y-%m-%d} (DEAD_LETTER_RETENTION_DAYS)"
            )
        message = row.message
        headers = {
            k: v
            for k, v in (message.get("headers") or {}).items()
            if k in (IDEMPOTENCY_HEADER, CORRELATION_HEADER) and v
        }
        result = app.send_task(
            row.task_name,
            args=message.get("args") or [],
            kwargs=message.get("kwargs") or {},
            headers=headers,
            queue=message.get("queue") or None,
        )
        row.replayed_at = utcnow()
        row.replay_task_id = result.id
    log.info("dead letter replayed", dead_letter_id=dead_letter_id, task_id=result.id)
    return str(result.id)
