"""Housekeeping: records older than their retention are deleted; dead letters keep their
arguments (for replay) longer, then only the arguments are purged.

``RETENTION_DAYS`` (30) for job runs, dry-run events, heartbeat ticks and alerts;
``DEAD_LETTER_RETENTION_DAYS`` (90) for a dead letter's message: after it the row stays (what
failed, why, when) with its arguments and headers removed, and it can no longer be replayed.
Audit events are kept.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select, update

from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import Alert, DeadLetter, DryRunEvent, HeartbeatTick, JobRun, utcnow

__all__ = ["purge_expired_records"]

_PURGE_BATCH = 500


def purge_expired_records(
    database_url: str, retention_days: int, dead_letter_retention_days: int
) -> dict[str, int]:
    """Delete and purge what is past its retention; return how many rows per table."""
    cutoff = utcnow() - timedelta(days=retention_days)
    done: dict[str, int] = {}
    with session_scope(database_url) as session:
        for model, column in (
            (JobRun, JobRun.started_at),
            (DryRunEvent, DryRunEvent.created_at),
            (HeartbeatTick, HeartbeatTick.created_at),
            (Alert, Alert.created_at),
        ):
            result = session.execute(delete(model).where(column < cutoff))
            done[model.__tablename__] = int(getattr(result, "rowcount", 0) or 0)
    done["sp_dead_letters (arguments purged)"] = _purge_dead_letter_arguments(
        database_url, dead_letter_retention_days
    )
    return done


def _purge_dead_letter_arguments(database_url: str, days: int) -> int:
    cutoff = utcnow() - timedelta(days=days)
    purged = 0
    while True:
        with session_scope(database_url) as session:
            rows = session.execute(
                select(DeadLetter.id, DeadLetter.task_name)
                .where(DeadLetter.created_at < cutoff, DeadLetter.purged_at.is_(None))
                .limit(_PURGE_BATCH)
            ).all()
            now = utcnow()
            for row_id, task_name in rows:
                session.execute(
                    update(DeadLetter)
                    .where(DeadLetter.id == row_id)
                    .values(message={"task": task_name, "purged": True}, purged_at=now)
                )
        purged += len(rows)
        if len(rows) < _PURGE_BATCH:
            return purged
