"""The run-record outbox: a job's final run record is durable with its acknowledgement.

A run record buffered in a worker's memory is lost when the worker is killed. Instead the
record of a job run by a worker goes to a Redis list, ``{prefix}:runs:{<mode>}:outbox``:

* with the acknowledgement itself when the platform's transport delivered the job in this
  process and the coordination keys live on the broker's node (solo and threads pools): the
  script that acknowledges the job pushes its record (``broker/lua/ack.lua``, ``fetch.lua``), so
  the record exists exactly when the acknowledgement does;
* otherwise (prefork children, RabbitMQ, a separate coordination Redis) with one ``RPUSH``
  before the job is acknowledged.

Every worker drains the outbox into the database (:meth:`RunOutbox.drain`, on its recorder's
thread, every 0.2 s and at a warm shutdown), one drainer at a time (a lock with a token), and
idempotently: a row is inserted unless its ``run_key`` is there already (``<task id>:<attempt>``
for a final record), then removed from the list if the drainer still holds the lock. A
drainer that dies between the two leaves rows the next one inserts again as no-ops.

Repeats caught at enqueue (a job answered by an earlier job of the same idempotency key) are
kept the same way, in a sibling list ``{prefix}:runs:{<mode>}:duplicates`` the producer pushes
one row onto (:func:`duplicate_row`); the same drainer, under the same lock, writes them into
``sp_enqueue_duplicates``, idempotently on their ``event_key``. A database without that table
(not migrated yet) leaves them waiting without holding up the run records.

While the database is down the rows wait in Redis, at most :data:`OUTBOX_LIMIT` of them: past
that the oldest are dropped (counted, logged as an error), so Redis memory stays bounded.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import redis
import structlog

from sandbox_platform.core.redis_client import REDIS_ERRORS
from sandbox_platform.db.lua import OUTBOX_SCRIPTS

__all__ = [
    "OUTBOX_LIMIT",
    "RunOutbox",
    "decode_row",
    "duplicate_row",
    "duplicates_key",
    "encode_row",
    "outbox_key",
    "run_key",
]

log = structlog.get_logger(__name__)

#: rows kept in Redis while the database is down; past it the oldest are dropped
OUTBOX_LIMIT = 100_000
#: rows written per insert
DRAIN_BATCH = 500
#: how long one drainer holds the lock (renewed by nothing: a drain round is short)
LOCK_MS = 30_000
_TIMES = ("started_at", "finished_at", "created_at")
#: a drain that keeps failing (the database down) logs once per this many seconds
ERROR_LOG_SECONDS = 60.0


def outbox_key(prefix: str, mode: str) -> str:
    """The outbox list of ``mode``'s run records (sandbox and live never share a database)."""
    return f"{prefix}:runs:{{{mode}}}:outbox"


def duplicates_key(prefix: str, mode: str) -> str:
    """The sibling list of ``mode``'s repeats caught at enqueue (same hash slot as the
    outbox: one drain lock for both)."""
    return f"{prefix}:runs:{{{mode}}}:duplicates"


def duplicate_row(
    task_name: str, idempotency_key: str, duplicate_of: str, correlation_id: str | None
) -> dict[str, Any]:
    """The record of a repeat caught at enqueue (``sp_enqueue_duplicates``): it was folded
    into the earlier job ``duplicate_of``."""
    return {
        "task_name": task_name,
        "idempotency_key": idempotency_key,
        "duplicate_of": duplicate_of,
        "correlation_id": correlation_id,
        "created_at": datetime.now(UTC),
        "event_key": uuid.uuid4().hex,
    }


def encode_row(row: Mapping[str, Any]) -> str:
    """A run record's values as the outbox keeps them (JSON; times in ISO 8601)."""
    return json.dumps(
        {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()},
        default=repr,
    )


def decode_row(raw: bytes | str) -> dict[str, Any]:
    """The values of an outbox row (raises ValueError when it is not one)."""
    row = json.loads(raw)
    if not isinstance(row, dict):
        raise ValueError("an outbox row is a JSON object")
    for name in _TIMES:
        if isinstance(row.get(name), str):
            row[name] = datetime.fromisoformat(row[name])
    return row


class RunOutbox:
    """The outbox of one app's mode on its coordination Redis; ``write`` inserts rows into the
    database, skipping those whose run key is there already."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        mode: str,
        write: Callable[[list[dict[str, Any]]], None],
        *,
        limit: int = OUTBOX_LIMIT,
        write_duplicates: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        self.client = client
        self.key = outbox_key(prefix, mode)
        #: the sibling list of repeats caught at enqueue, written by ``write_duplicates``
        self.duplicates_key = duplicates_key(prefix, mode)
        self.write_duplicates = write_duplicates
        self.lock_key = f"{prefix}:runs:{{{mode}}}:drain"
        self.write = write
        self.limit = limit
        self.dropped = 0
        self._logged_at = -ERROR_LOG_SECONDS

    def push(self, row: Mapping[str, Any]) -> None:
        """Keep ``row`` now (one round trip; raises a RedisError when Redis is unreachable)."""
        self.client.rpush(self.key, encode_row(row))

    def drain(self) -> int:
        """Write what the outbox holds into the database (if no other drainer is at it); how
        many rows were written. Errors are logged; the rows stay for the next round."""
        token = uuid.uuid4().hex
        try:
            if not self.client.set(self.lock_key, token, nx=True, px=LOCK_MS):
                return 0
        except REDIS_ERRORS:
            return 0  # Redis unreachable: the rows are there when it is back
        try:
            lists = [(self.key, self.write)]
            if self.write_duplicates is not None:
                lists.append((self.duplicates_key, self.write_duplicates))
            return sum(self._drain_list(token, key, write) for key, write in lists)
        finally:
            self._release(token)

    def _drain_list(
        self, token: str, key: str, write: Callable[[list[dict[str, Any]]], None]
    ) -> int:
        """One list's rows into the database; an error is logged and leaves them there."""
        try:
            self._bound(key)
            return self._drain_batches(token, key, write)
        except Exception:
            if time.monotonic() - self._logged_at > ERROR_LOG_SECONDS:
                self._logged_at = time.monotonic()
                log.exception("run-record outbox not drained; its rows wait in Redis", key=key)
            return 0

    def _drain_batches(
        self, token: str, key: str, write: Callable[[list[dict[str, Any]]], None]
    ) -> int:
        written = 0
        while True:
            raw = self.client.lrange(key, 0, DRAIN_BATCH - 1)
            if not raw:
                return written
            write(_decoded(raw))
            trim = OUTBOX_SCRIPTS.get(self.client, "outbox_trim")
            if not trim(keys=[key, self.lock_key], args=[token, len(raw)]):
                return written  # the lock expired: the next drainer goes on
            written += len(raw)
            if len(raw) < DRAIN_BATCH:
                return written

    def _bound(self, key: str) -> None:
        excess = int(self.client.llen(key)) - self.limit
        if excess > 0:
            self.client.ltrim(key, excess, -1)
            self.dropped += excess
            log.error(
                "run-record outbox over its limit (database down?): oldest records dropped",
                key=key,
                dropped=excess,
                limit=self.limit,
            )

    def _release(self, token: str) -> None:
        with contextlib.suppress(*REDIS_ERRORS):  # else it expires by itself
            OUTBOX_SCRIPTS.get(self.client, "outbox_release")(keys=[self.lock_key], args=[token])


def _decoded(raw: list[Any]) -> list[dict[str, Any]]:
    rows = []
    for item in raw:
        try:
            rows.append(decode_row(item))
        except ValueError:
            log.error("an outbox element that is not a run record dropped", raw=repr(item)[:200])
    return rows


def run_key(task_id: str, attempt: int, *, final: bool) -> str:
    """The run key of a record: one final record per attempt; other records are each their
    own (a job may be deferred, or retried after a failed publish, several times in one
    attempt)."""
    key = f"{task_id}:{attempt}"
    return key if final else f"{key}:{uuid.uuid4().hex[:12]}"
