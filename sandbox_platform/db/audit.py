"""Audit events: what an operator did through the dashboard or the command line."""

from __future__ import annotations

from typing import Any

import structlog

from sandbox_platform.core.context import current_correlation_id
from sandbox_platform.core.redaction import redact
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import AuditEvent

__all__ = ["record_audit"]

log = structlog.get_logger(__name__)


def record_audit(
    database_url: str,
    *,
    actor: str,
    action: str,
    target: str,
    source: str,
    detail: dict[str, Any] | None = None,
) -> int:
    """Store one audit event now (synchronously: an operator's action is rare); its id."""
    with session_scope(database_url) as session:
        row = AuditEvent(
            actor=actor[:255],
            action=action[:64],
            target=target[:255],
            detail=redact(dict(detail or {})),
            source=source[:32],
            correlation_id=current_correlation_id(),
        )
        session.add(row)
        session.flush()
        audit_id = row.id
    log.info("audit", audit_id=audit_id, actor=actor, action=action, target=target, source=source)
    return audit_id
