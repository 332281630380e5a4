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

While the database is down the rows wait in Redis, at most :data:`OUTBOX_LIMIT` of them: past
that the oldest are dropped (counted, logged as an error), so Redis memory stays bounded.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import redis
import structlog

from sandbox_platform.core.redis_client import REDIS_ERRORS
from sandbox_platform.db.lua import OUTBOX_SCRIPTS

__all__ = ["OUTBOX_LIMIT", "RunOutbox", "decode_row", "encode_row", "outbox_key", "run_key"]

log = structlog.get_logger(__name__)

#: rows kept in Redis while the database is down; past it the oldest are dropped
OUTBOX_LIMIT = 100_000
#: rows written per insert
DRAIN_BATCH = 500
#: how long one drainer holds the lock (renewed by nothing: a drain round is short)
LOCK_MS = 30_000
_TIMES = ("started_at", "finished_at")
#: a drain that keeps failing (the database down) logs once per this many seconds
ERROR_LOG_SECONDS = 60.0


def outbox_key(prefix: str, mode: str) -> str:
    """The outbox list of ``mode``'s run records (sandbox and live never share a database)."""
    return f"{prefix}:runs:{{{mode}}}:outbox"


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
    ) -> None:
        self.client = client
        self.key = outbox_key(prefix, mode)
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
            self._bound()
            return self._drain_batches(token)
        except Exception:
            if time.monotonic() - self._logged_at > ERROR_LOG_SECONDS:
                self._logged_at = time.monotonic()
                log.exception("run-record outbox not drained; its rows wait in Redis", key=self.key)
            return 0
        finally:
            self._release(token)

    def _drain_batches(self, token: str) -> int:
        written = 0
        while True:
            raw = self.client.lrange(self.key, 0, DRAIN_BATCH - 1)
            if not raw:
                return written
            self.write(_decoded(raw))
            trim = OUTBOX_SCRIPTS.get(self.client, "outbox_trim")
            if not trim(keys=[self.key, self.lock_key], args=[token, len(raw)]):
                return written  # the lock expired: the next drainer goes on
            written += len(raw)
            if len(raw) < DRAIN_BATCH:
                return written

    def _bound(self) -> None:
        excess = int(self.client.llen(self.key)) - self.limit
        if excess > 0:
            self.client.ltrim(self.key, excess, -1)
            self.dropped += excess
            log.error(
                "run-record outbox over its limit (database down?): oldest records dropped",
                key=self.key,
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
