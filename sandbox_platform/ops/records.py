"""What the platform recorded, read back for people: alerts, dry-run events, dead letters,
audit events, heartbeat ticks, and everything one correlation id (or one job) touched.

Every function returns JSON-ready dicts (ISO times), newest first unless said otherwise, with
secrets masked for display: a dead letter keeps the arguments replay needs, but they are
never shown unmasked. The dashboard and the command line both read through here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select

from sandbox_platform.core.redaction import redact
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import (
    Alert,
    AuditEvent,
    DeadLetter,
    DryRunEvent,
    Effect,
    EnqueueDuplicate,
    HeartbeatTick,
    JobRun,
)
from sandbox_platform.ops.alerts import Severity

__all__ = [
    "alert_kinds",
    "correlation_timeline",
    "dead_letter_dict",
    "dry_run_actions",
    "heartbeat_ticks",
    "list_alerts",
    "list_audit",
    "list_dead_letters",
    "list_dry_runs",
    "task_timeline",
]

MAX_LIMIT = 1000


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _limit(limit: int) -> int:
    return max(1, min(int(limit), MAX_LIMIT))


def _rows(database_url: str, query: Select[Any]) -> list[Any]:
    with session_scope(database_url) as session:
        return list(session.scalars(query))


def alert_dict(row: Alert) -> dict[str, Any]:
    return {
        "id": row.id,
        "severity": row.severity,
        "kind": row.kind,
        "message": row.message,
        "context": row.context,
        "correlation_id": row.correlation_id,
        "suppressed": row.suppressed,
        "created_at": _iso(row.created_at),
    }


def list_alerts(
    database_url: str,
    *,
    severity: str | None = None,
    kind: str | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Alerts newest first; ``severity`` is the lowest shown, ``after_id`` only newer ones."""
    query = select(Alert).order_by(Alert.id.desc()).limit(_limit(limit))
    if severity:
        floor = Severity.parse(severity)
        query = query.where(Alert.severity.in_([s.label for s in Severity if s >= floor]))
    if kind:
        query = query.where(Alert.kind == kind)
    if after_id is not None:
        query = query.where(Alert.id > after_id)
    return [alert_dict(row) for row in _rows(database_url, query)]


def alert_kinds(database_url: str) -> list[str]:
    with session_scope(database_url) as session:
        return sorted(k for k in session.scalars(select(Alert.kind).distinct()) if k)


def dry_run_dict(row: DryRunEvent) -> dict[str, Any]:
    return {
        "id": row.id,
        "action": row.action,
        "function": row.function,
        "arguments": redact(row.arguments),
        "simulated_result": redact(row.simulated_result),
        "mode": row.mode,
        "task_id": row.task_id,
        "correlation_id": row.correlation_id,
        "created_at": _iso(row.created_at),
    }


def list_dry_runs(
    database_url: str,
    *,
    action: str | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Intercepted irreversible calls, newest first (``action`` filters)."""
    query = select(DryRunEvent).order_by(DryRunEvent.id.desc()).limit(_limit(limit))
    if action:
        query = query.where(DryRunEvent.action == action)
    if after_id is not None:
        query = query.where(DryRunEvent.id > after_id)
    return [dry_run_dict(row) for row in _rows(database_url, query)]


def dry_run_actions(database_url: str) -> list[str]:
    with session_scope(database_url) as session:
        return sorted(a for a in session.scalars(select(DryRunEvent.action).distinct()) if a)


def dead_letter_dict(row: DeadLetter) -> dict[str, Any]:
    """A dead letter for display: the stored message with its arguments masked."""
    return {
        "id": row.id,
        "task_id": row.task_id,
        "task_name": row.task_name,
        "reason": row.reason,
        "detail": row.detail,
        "correlation_id": row.correlation_id,
        "created_at": _iso(row.created_at),
        "replayed_at": _iso(row.replayed_at),
        "replay_task_id": row.replay_task_id,
        "message": redact(row.message),
    }


def list_dead_letters(
    database_url: str, *, reason: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    query = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(_limit(limit))
    if reason:
        query = query.where(DeadLetter.reason == reason)
    return [dead_letter_dict(row) for row in _rows(database_url, query)]


def list_audit(database_url: str, *, limit: int = 100) -> list[dict[str, Any]]:
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(_limit(limit))
    return [
        {
            "id": row.id,
            "actor": row.actor,
            "action": row.action,
            "target": row.target,
            "source": row.source,
            "detail": row.detail,
            "correlation_id": row.correlation_id,
            "created_at": _iso(row.created_at),
        }
        for row in _rows(database_url, query)
    ]


def heartbeat_ticks(database_url: str, since: datetime) -> list[dict[str, Any]]:
    """Recorded beat ticks since ``since``, oldest first."""
    query = (
        select(HeartbeatTick)
        .where(HeartbeatTick.created_at >= since)
        .order_by(HeartbeatTick.created_at)
        .limit(MAX_LIMIT * 10)
    )
    return [
        {
            "tick_id": row.tick_id,
            "redis_time": row.redis_time,
            "worker": row.worker,
            "created_at": _iso(row.created_at),
        }
        for row in _rows(database_url, query)
    ]


# -- one correlation id ------------------------------------------------------------------------


def _run_entry(row: JobRun) -> dict[str, Any]:
    return {
        "kind": "run",
        "at": _iso(row.started_at),
        "task_id": row.task_id,
        "task_name": row.task_name,
        "state": row.state,
        "attempt": row.attempt,
        "duration_ms": row.duration_ms,
        "error": row.error,
    }


def _effect_entry(row: Effect) -> dict[str, Any]:
    return {
        "kind": "effect",
        "at": _iso(row.created_at),
        "task_id": row.task_id,
        "idempotency_key": row.idempotency_key,
        "fencing_token": row.fencing_token,
    }


def _duplicate_entries(session: Any, correlation_id: str) -> list[dict[str, Any]]:
    """The repeats caught at enqueue under ``correlation_id``: each names the job it was
    folded into and that job's correlation id (None until a run of it is recorded)."""
    rows = session.scalars(
        select(EnqueueDuplicate).where(EnqueueDuplicate.correlation_id == correlation_id)
    ).all()
    entries = []
    for row in rows:
        first = session.scalars(
            select(JobRun.correlation_id).where(JobRun.task_id == row.duplicate_of).limit(1)
        ).first()
        entries.append(
            {
                "kind": "duplicate",
                "at": _iso(row.created_at),
                "task_id": None,
                "task_name": row.task_name,
                "idempotency_key": row.idempotency_key,
                "duplicate_of": row.duplicate_of,
                "duplicate_of_correlation_id": first,
            }
        )
    return entries


def correlation_timeline(database_url: str, correlation_id: str) -> list[dict[str, Any]]:
    """Every run, retry, dry-run event, alert, dead letter and effect row that carries
    ``correlation_id``, and every repeat caught at enqueue under it (``duplicate``: the
    job it was folded into), in time order (each entry has ``kind`` and ``at``)."""
    return _timeline(database_url, "correlation_id", correlation_id)


def task_timeline(database_url: str, task_id: str) -> list[dict[str, Any]]:
    """Every run, retry, dry-run event, dead letter and effect row of job ``task_id``, in time
    order (alerts carry no task id)."""
    return _timeline(database_url, "task_id", task_id)


def _timeline(database_url: str, column: str, value: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    with session_scope(database_url) as session:

        def carrying(model: Any) -> Iterable[Any]:
            if not hasattr(model, column):
                return ()
            return session.scalars(select(model).where(getattr(model, column) == value))

        entries += [_run_entry(row) for row in carrying(JobRun)]
        entries += [_effect_entry(row) for row in carrying(Effect)]
        if column == "correlation_id":  # repeats caught at enqueue carry no task id
            entries += _duplicate_entries(session, value)
        for kind, model, shape in _TIMELINE:
            for row in carrying(model):
                entry = shape(row)
                if "kind" in entry:  # an alert's own kind
                    entry["alert_kind"] = entry.pop("kind")
                entries.append({**entry, "kind": kind})
    for entry in entries:
        entry.setdefault("at", entry.get("created_at"))
    return sorted(entries, key=lambda entry: entry["at"] or "")


_TIMELINE: tuple[tuple[str, Any, Any], ...] = (
    ("dry_run", DryRunEvent, dry_run_dict),
    ("alert", Alert, alert_dict),
    ("dead_letter", DeadLetter, dead_letter_dict),
)
