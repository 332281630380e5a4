"""Dead letters: jobs that will not run again by themselves, stored with the full message.

Reasons: ``retries_exhausted``, ``non_retryable``, ``idempotency_conflict``, ``bad_record`` (a
record of the job holds another Redis type), ``wrong_mode``, ``poison`` (killed its worker too
often), ``unknown_task``, ``rejected``. Replaying one is an
operation (:mod:`sandbox_platform.ops.deadletters`); reading them for display, arguments
masked, is :func:`sandbox_platform.ops.records.list_dead_letters`.
"""

from __future__ import annotations

from typing import Any

import structlog

from sandbox_platform.core.redaction import redact
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import DeadLetter

__all__ = ["store_dead_letter"]

log = structlog.get_logger(__name__)


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
