"""The records the platform keeps. One table per concept; JSON columns for payloads.

Every row carries the correlation id of the work that produced it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Alert",
    "AuditEvent",
    "Base",
    "DeadLetter",
    "DryRunEvent",
    "Effect",
    "EnqueueDuplicate",
    "HeartbeatTick",
    "JobRun",
    "utcnow",
]

NAMING = MappingProxyType(
    {
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BigInteger primary keys that still autoincrement on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=dict(NAMING), schema=None)
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class JobRun(Base):
    """One execution attempt of a guarded task."""

    __tablename__ = "sp_job_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(64), index=True)
    task_name: Mapped[str] = mapped_column(String(255), index=True)
    correlation_id: Mapped[str | None] = mapped_column(String(64), index=True)
    #: the job that enqueued this one (Celery's ``parent_id``), None for a job enqueued
    #: from outside a job
    parent_id: Mapped[str | None] = mapped_column(String(64), index=True)
    #: the first job of its tree (Celery's ``root_id``; None or the job's own id for a root)
    root_id: Mapped[str | None] = mapped_column(String(64), index=True)
    mode: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(32))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    duration_ms: Mapped[float | None]
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None]
    #: one per record: ``<task id>:<attempt>`` for a run's final record (one per attempt),
    #: with a random suffix for a deferral; the run-record outbox drains idempotently on it
    run_key: Mapped[str | None] = mapped_column(String(120), unique=True)


class EnqueueDuplicate(Base):
    """A repeat caught at enqueue: an earlier job of the same idempotency key answered it
    (nothing was published). Kept under the repeat's own correlation id."""

    __tablename__ = "sp_enqueue_duplicates"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    task_name: Mapped[str] = mapped_column(String(255))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    #: the task id of the earlier job the repeat was folded into
    duplicate_of: Mapped[str] = mapped_column(String(64), index=True)
    correlation_id: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: one per repeat: the outbox drains idempotently on it
    event_key: Mapped[str] = mapped_column(String(64), unique=True)


class DryRunEvent(Base):
    """An irreversible action intercepted in sandbox mode (or passed through in live)."""

    __tablename__ = "sp_dry_run_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    action: Mapped[str] = mapped_column(String(255), index=True)
    function: Mapped[str] = mapped_column(String(512))
    arguments: Mapped[dict[str, Any]]
    simulated_result: Mapped[dict[str, Any] | None]
    #: what the simulator raised, when it did (the call was intercepted all the same)
    error: Mapped[str | None] = mapped_column(Text)
    intercepted: Mapped[bool] = mapped_column(default=True)
    mode: Mapped[str] = mapped_column(String(16))
    task_id: Mapped[str | None] = mapped_column(String(64), index=True)
    correlation_id: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Alert(Base):
    """An alert as dispatched, with how many identical ones throttling suppressed."""

    __tablename__ = "sp_alerts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    severity: Mapped[str] = mapped_column(String(16), index=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    message: Mapped[str] = mapped_column(Text)
    context: Mapped[dict[str, Any]]
    correlation_id: Mapped[str | None] = mapped_column(String(64), index=True)
    suppressed: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeadLetter(Base):
    """A job that will not be run again by itself: exhausted, poison, or wrong mode."""

    __tablename__ = "sp_dead_letters"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(64), index=True)
    task_name: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(String(64), index=True)
    detail: Mapped[str | None] = mapped_column(Text)
    message: Mapped[dict[str, Any]]
    correlation_id: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    replayed_at: Mapped[datetime | None]
    replay_task_id: Mapped[str | None] = mapped_column(String(64))
    #: when its arguments were purged (after DEAD_LETTER_RETENTION_DAYS); it cannot be replayed
    purged_at: Mapped[datetime | None]


class Effect(Base):
    """The proof an effect happened once: unique per idempotency key.

    A task writes this row in the same transaction as its effect; the unique constraint,
    not Redis, is what makes the effect happen once.
    """

    __tablename__ = "sp_effects"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    task_id: Mapped[str | None] = mapped_column(String(64))
    fencing_token: Mapped[int | None] = mapped_column(BigInteger)
    correlation_id: Mapped[str | None] = mapped_column(String(64), index=True)
    result: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class HeartbeatTick(Base):
    """One beat tick, recorded once whichever beat sent it (``tick_id`` is unique)."""

    __tablename__ = "sp_heartbeat_ticks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tick_id: Mapped[str] = mapped_column(String(128), unique=True)
    redis_time: Mapped[float]
    worker: Mapped[str | None] = mapped_column(String(255))
    correlation_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEvent(Base):
    """An operator's action (a replay, a limit change): who did it, to what, and when."""

    __tablename__ = "sp_audit_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(255))
    detail: Mapped[dict[str, Any]]
    source: Mapped[str] = mapped_column(String(32))
    correlation_id: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
