"""Batched writes of the platform's records (job runs, dry-run events) off the hot path.

A task never waits for the database: :meth:`Recorder.add` puts a row on an in-memory buffer
and a daemon thread writes buffered rows in one ``INSERT`` per table every ``interval``
seconds (or sooner when ``batch_size`` rows wait). :meth:`Recorder.flush` writes everything
now; the Celery shutdown signals and ``atexit`` call it, so a warm shutdown loses nothing.
If the database is down, rows stay buffered (up to ``max_buffer``) and are retried. One bad
row never blocks the others: over-long strings are cut to their column (and flagged with a
trailing ``…``), and a batch the database refuses is written row by row, dropping (and
logging) only the rows it refuses. A SIGKILL can lose what is buffered: at most about one
``interval`` (0.2 s) of records.
"""

from __future__ import annotations

import atexit
import functools
import os
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy import String, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, IntegrityError, ProgrammingError

from sandbox_platform.db.engine import get_engine, session_scope
from sandbox_platform.db.models import Base

__all__ = ["Recorder"]


@functools.cache
def _string_limits(model: type[Base]) -> dict[str, int]:
    """The bounded string columns of ``model`` and their lengths."""
    return {
        column.name: int(column.type.length)
        for column in model.__table__.columns
        if isinstance(column.type, String) and column.type.length
    }


log = structlog.get_logger(__name__)


class Recorder:
    """Buffer rows per model and write them in batches on a background thread."""

    def __init__(
        self,
        database_url: str,
        *,
        interval: float = 0.2,
        batch_size: int = 500,
        max_buffer: int = 100_000,
    ) -> None:
        self.database_url = database_url
        self.interval = interval
        self.batch_size = batch_size
        self.max_buffer = max_buffer
        self._rows: list[tuple[type[Base], dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        #: drains the run-record outbox into the database (db/outbox.py), on the same thread
        self.drain: Callable[[], int] | None = None
        self.written = 0
        self.dropped = 0
        self.truncated = 0
        self.rejected = 0
        atexit.register(self.close)

    def add(self, model: type[Base], **values: Any) -> None:
        """Queue one row; never blocks on the database."""
        self._ensure_thread()
        with self._lock:
            if len(self._rows) >= self.max_buffer:
                self._rows.pop(0)
                self.dropped += 1
                log.error("recorder buffer full; oldest row dropped", dropped=self.dropped)
            self._rows.append((model, values))
            pending = len(self._rows)
        if pending >= self.batch_size:
            self._wake.set()

    def write_now(self, model: type[Base], **values: Any) -> None:
        """Write one row synchronously (a process that may exit at once, e.g. a child process
        started by task code, cannot wait for the background thread)."""
        self._write([(model, values)])
        self.written += 1

    def start(self) -> None:
        """Start the background thread now (a worker: it drains the outbox from its start)."""
        self._ensure_thread()

    def insert_new(self, model: type[Base], rows: list[dict[str, Any]]) -> None:
        """Insert ``rows`` now, skipping those whose unique key is there already (the outbox's
        drain: a row written twice is one row); a row the database refuses is dropped, logged."""
        columns = set(model.__table__.columns.keys())
        fitted = [self._fitted(model, {k: v for k, v in r.items() if k in columns}) for r in rows]
        if not fitted:
            return
        try:
            self._insert_new(model, fitted)
        except (DataError, IntegrityError):
            for row in fitted:  # find the one it refuses; the others go in
                try:
                    self._insert_new(model, [row])
                except (DataError, IntegrityError) as exc:
                    self._refused(model, exc)
        self.written += len(fitted)

    def _insert_new(self, model: type[Base], rows: list[dict[str, Any]]) -> None:
        """One core ``INSERT .. ON CONFLICT DO NOTHING`` for ``rows`` (no ORM bulk path: the
        outbox's rows are plain values)."""
        engine = get_engine(self.database_url)
        table: Any = model.__table__
        statement: Any = insert(table)
        if engine.dialect.name == "postgresql":
            statement = postgresql.insert(table).on_conflict_do_nothing()
        elif engine.dialect.name == "sqlite":
            statement = sqlite.insert(table).on_conflict_do_nothing()
        with engine.begin() as connection:
            connection.execute(statement, rows)

    def pending(self) -> int:
        with self._lock:
            return len(self._rows)

    def flush(self) -> int:
        """Write every buffered row now; return how many were written."""
        with self._flush_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return 0
            try:
                self._write(rows)
            except (DataError, IntegrityError, ProgrammingError):
                return self._write_one_by_one(rows)  # a bad row must not block the others
            except Exception:
                log.exception("recording rows failed; they stay buffered", rows=len(rows))
                with self._lock:
                    self._rows[:0] = rows
                return 0
            self.written += len(rows)
            return len(rows)

    def _write_one_by_one(self, rows: list[tuple[type[Base], dict[str, Any]]]) -> int:
        written = 0
        for index, row in enumerate(rows):
            try:
                self._write([row])
            except (DataError, IntegrityError, ProgrammingError) as exc:
                self._refused(row[0], exc)
            except Exception:
                log.exception("recording rows failed; they stay buffered", rows=len(rows) - index)
                with self._lock:
                    self._rows[:0] = rows[index:]
                break
            else:
                written += 1
        self.written += written
        return written

    def _refused(self, model: type[Base], exc: Exception) -> None:
        self.rejected += 1
        orig = getattr(exc, "orig", None)
        log.error(
            "a record the database refuses was dropped",
            table=model.__tablename__,
            error=" ".join(str(orig or exc).split())[:300],
        )

    def close(self) -> None:
        """Stop the thread and write what is left (warm shutdown)."""
        self._stopped.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=10)
        if os.getpid() == self._pid:
            self.flush()
            if self.drain is not None:
                self.drain()

    def _write(self, rows: list[tuple[type[Base], dict[str, Any]]]) -> None:
        by_model: dict[type[Base], list[dict[str, Any]]] = defaultdict(list)
        for model, values in rows:
            by_model[model].append(self._fitted(model, values))
        with session_scope(self.database_url) as session:
            for model, batch in by_model.items():
                session.execute(insert(model), batch)

    def _fitted(self, model: type[Base], values: dict[str, Any]) -> dict[str, Any]:
        """``values`` with every string cut to its column's length (flagged with a trailing
        ``…`` and counted), so an over-long id cannot make the batch fail."""
        limits = _string_limits(model)
        fitted = values
        for column, limit in limits.items():
            value = values.get(column)
            if isinstance(value, str) and len(value) > limit:
                if fitted is values:
                    fitted = dict(values)
                fitted[column] = value[: limit - 1] + "…"
                self.truncated += 1
                log.warning("over-long value truncated", table=model.__tablename__, column=column)
        return fitted

    def _ensure_thread(self) -> None:
        if os.getpid() != self._pid:  # forked: the parent's thread and rows are not ours
            self._pid = os.getpid()
            self._thread = None
            with self._lock:
                self._rows = []
        thread = self._thread
        if thread is not None and thread.ident is not None and not self._stopped.is_set():
            return  # started in this process and not stopped
        if thread is None or not thread.is_alive():
            self._stopped.clear()
            self._thread = threading.Thread(
                target=self._loop, name="sandbox-platform-recorder", daemon=True
            )
            self._thread.start()

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()
            if self.drain is not None:
                self.drain()
