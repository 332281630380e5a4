"""Dead letters: jobs that will not run again by themselves, stored with the full message.

Reasons: ``retries_exhausted``, ``non_retryable``, ``idempotency_conflict``, ``wrong_mode``,
``poison`` (killed its worker too often), ``unknown_task``, ``rejected``. Replaying one is an
operation (:mod:`sandbox_platform.ops.deadletters`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select

from sandbox_platform.core.redaction import redact
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import DeadLetter

__all__ = [
    "DeadLetterRecord",
    "list_dead_letters",
    "store_dead_letter",
]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class DeadLetterRecord:
    id: int
    task_id: str
    task_name: str
    reason: str
    detail: str | None
    correlation_id: str | None
    created_at: datetime
    replayed_at: datetime | None
    message: dict[str, Any]


def store_dead_letter(
    database_url: str,
    *,
    task_id: str,
    task_name: str,
    reason: str,
    detail: str | None,
    message: dict[str, Any],
    correlation_id: str | None,
) -> int:
    """Store one dead letter now (rare path: a synchronous write is fine); return its id."""
    with session_scope(database_url) as session:
        row = DeadLetter(
            task_id=task_id,
            task_name=task_name,
            reason=reason,
            detail=redact(detail) if detail else None,
            message=message,
            correlation_id=correlation_id,
        )
        session.add(row)
        session.flush()
        dead_letter_id = row.id
    log.warning(
        "job dead-lettered",
        dead_letter_id=dead_letter_id,
        task_id=task_id,
        task_name=task_name,
        reason=reason,
        detail=detail,
    )
    return dead_letter_id


def _record(row: DeadLetter) -> DeadLetterRecord:
    return DeadLetterRecord(
        id=row.id,
        task_id=row.task_id,
        task_name=row.task_name,
        reason=row.reason,
        detail=row.detail,
        correlation_id=row.correlation_id,
        created_at=row.created_at,
        replayed_at=row.replayed_at,
        message=row.message,
    )


def list_dead_letters(
    database_url: str, *, reason: str | None = None, limit: int = 100
) -> list[DeadLetterRecord]:
    with session_scope(database_url) as session:
        query = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)
        if reason:
            query = query.where(DeadLetter.reason == reason)
        return [_record(row) for row in session.scalars(query)]
