"""Where alerts go: a sink is anything with ``send(alert)``; ``close()`` is optional."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Protocol, runtime_checkable

import structlog
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from sandbox_platform.db import models
from sandbox_platform.db.engine import session_scope

from ._model import Alert, Severity

__all__ = ["DatabaseSink", "LogSink", "MemorySink", "Sink"]


@runtime_checkable
class Sink(Protocol):
    """What :meth:`AlertDispatcher.subscribe` takes: ``send(alert)`` delivers one alert; a
    ``close(timeout)`` method, where a sink has one, is called by :meth:`AlertDispatcher.close`."""

    def send(self, alert: Alert) -> None: ...


class LogSink:
    """One structlog line per alert, at the level matching its severity."""

    def __init__(self, logger_name: str = "sandbox_platform.alerts") -> None:
        self._log = structlog.get_logger(logger_name)

    def send(self, alert: Alert) -> None:
        method = getattr(self._log, alert.severity.label)
        method(
            "alert",
            kind=alert.kind,
            severity=alert.severity.label,
            message=alert.message,
            correlation_id=alert.correlation_id,
            suppressed=alert.suppressed,
            key=alert.key,
            context=alert.context,
        )


class MemorySink:
    """Keeps the last ``maxlen`` alerts and a total count (tests, status pages)."""

    def __init__(self, maxlen: int = 1000) -> None:
        if maxlen < 1:
            raise ValueError(f"MemorySink maxlen must be >= 1, got {maxlen}")
        self._lock = threading.Lock()
        self._alerts: deque[Alert] = deque(maxlen=maxlen)
        self._total = 0

    def send(self, alert: Alert) -> None:
        with self._lock:
            self._alerts.append(alert)
            self._total += 1

    def count(self) -> int:
        """Alerts received since construction (not only those kept)."""
        with self._lock:
            return self._total

    def recent(self, n: int = 20) -> list[Alert]:
        """Up to ``n`` most recent alerts, newest first."""
        with self._lock:
            items = list(self._alerts)
        return items[::-1][: max(n, 0)]

    @property
    def alerts(self) -> list[Alert]:
        """Everything kept, oldest first."""
        with self._lock:
            return list(self._alerts)

    def clear(self) -> None:
        with self._lock:
            self._alerts.clear()
            self._total = 0


#: PostgreSQL's ``undefined_table``
_UNDEFINED_TABLE = "42P01"


def _table_missing(error: DBAPIError) -> bool:
    """True when ``error`` says the table does not exist (PostgreSQL or SQLite)."""
    original = error.orig
    if getattr(original, "sqlstate", None) == _UNDEFINED_TABLE:  # psycopg 3
        return True
    return "no such table" in str(original)  # sqlite3


class DatabaseSink:
    """Writes one :class:`sandbox_platform.db.models.Alert` row per alert (synchronously).

    A database without the alerts table (its migrations not applied yet: readiness says
    ``MIGRATIONS_BEHIND``) is not an error of each alert: the alert is not stored, and one
    short warning says so until the table is there (then again if it goes missing)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._said_missing = False
        self._log = structlog.get_logger("sandbox_platform.alerts")

    def send(self, alert: Alert) -> None:
        try:
            self._insert(alert)
        except DBAPIError as error:
            if not _table_missing(error):
                raise
            if not self._said_missing:
                self._said_missing = True
                self._log.warning(
                    "alerts_not_stored",
                    reason=f"no {models.Alert.__tablename__} table: run `sandbox-platform "
                    "db upgrade`",
                    kind=alert.kind,
                )
            return
        self._said_missing = False

    def _insert(self, alert: Alert) -> None:
        with session_scope(self.database_url) as session:
            session.add(
                models.Alert(
                    severity=alert.severity.label,
                    kind=alert.kind,
                    message=alert.message,
                    context=alert.context,
                    correlation_id=alert.correlation_id,
                    suppressed=alert.suppressed,
                    created_at=alert.created_at,
                )
            )

    def count(self, *, kind: str | None = None) -> int:
        stmt = select(func.count()).select_from(models.Alert)
        if kind is not None:
            stmt = stmt.where(models.Alert.kind == kind)
        with session_scope(self.database_url) as session:
            return int(session.scalar(stmt) or 0)

    def recent(self, n: int = 20) -> list[dict[str, Any]]:
        """Up to ``n`` most recent rows as dicts, newest first."""
        stmt = select(models.Alert).order_by(models.Alert.id.desc()).limit(max(n, 0))
        with session_scope(self.database_url) as session:
            return [
                {
                    "id": row.id,
                    "severity": Severity.parse(row.severity).label,
                    "kind": row.kind,
                    "message": row.message,
                    "context": row.context,
                    "correlation_id": row.correlation_id,
                    "suppressed": row.suppressed,
                    "created_at": row.created_at.isoformat(),
                }
                for row in session.scalars(stmt)
            ]
