"""The run-record outbox (db/outbox.py) against a real Redis and real databases: drained
idempotently on the run key, one drainer at a time, bounded while the database is down."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from sandbox_platform.db import migrate
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import JobRun
from sandbox_platform.db.outbox import RunOutbox, encode_row, run_key
from sandbox_platform.db.recorder import Recorder
from sandbox_platform.guards.run_records import FINAL_STATES


def _row(n: int, state: str = "succeeded") -> dict[str, Any]:
    return {
        "task_id": f"task-{n}",
        "task_name": "tests.outbox",
        "correlation_id": None,
        "mode": "sandbox",
        "state": state,
        "attempt": 1,
        "started_at": datetime.now(UTC),
        "finished_at": datetime.now(UTC),
        "duration_ms": 1.5,
        "error": None,
        "result": {"n": n},
        "run_key": run_key(f"task-{n}", 1, final=state in FINAL_STATES),
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, sqlite_url: str) -> str:  # type: ignore[no-untyped-def]
    if request.param == "postgresql":
        sandbox, _live = request.getfixturevalue("pg_databases")
        return str(sandbox)
    migrate.upgrade(sqlite_url)
    return sqlite_url


def _outbox(client: redis.Redis, database: str, **kwargs: Any) -> RunOutbox:
    recorder = Recorder(database)
    return RunOutbox(
        client, "sp", "sandbox", lambda rows: recorder.insert_new(JobRun, rows), **kwargs
    )


def _count(database: str) -> int:
    with session_scope(database) as session:
        return int(session.scalar(select(func.count()).select_from(JobRun)) or 0)


def test_a_row_drained_twice_is_one_row(redis_client, database: str) -> None:
    outbox = _outbox(redis_client, database)
    rows = [_row(n) for n in range(1200)]  # more than one batch
    for row in rows:
        outbox.push(row)
    outbox.push(rows[7])  # the same final record again (e.g. a drainer died before trimming)
    assert outbox.drain() == 1201
    assert redis_client.llen(outbox.key) == 0
    assert _count(database) == 1200
    with session_scope(database) as session:
        run = session.scalars(select(JobRun).where(JobRun.task_id == "task-7")).one()
        assert (run.state, run.result, run.run_key) == ("succeeded", {"n": 7}, "task-7:1")
        assert run.started_at is not None


def test_deferrals_and_retries_are_each_their_own_record(redis_client, database: str) -> None:
    """A job may be deferred, or retried after its retry's publish failed (same attempt),
    several times: each is a record; only the final one is one per attempt."""
    outbox = _outbox(redis_client, database)
    for state in ("deferred", "deferred", "retrying", "retrying"):
        outbox.push(_row(1, state))
    outbox.push(_row(1))
    outbox.push(_row(1, "deduplicated"))  # the same attempt's end, again: not a second one
    outbox.drain()
    assert _count(database) == 5


def test_one_drainer_at_a_time_and_a_drainer_that_lost_its_lock_trims_nothing(
    redis_client, database: str
) -> None:
    outbox = _outbox(redis_client, database)
    for n in range(5):
        outbox.push(_row(n))
    redis_client.set(outbox.lock_key, "another drainer")
    assert outbox.drain() == 0  # someone else is at it
    assert redis_client.llen(outbox.key) == 5

    redis_client.delete(outbox.lock_key)
    recorder = Recorder(database)

    def write_then_lose_the_lock(rows: list[dict[str, Any]]) -> None:
        recorder.insert_new(JobRun, rows)
        redis_client.set(outbox.lock_key, "took over after expiry")

    slow = RunOutbox(redis_client, "sp", "sandbox", write_then_lose_the_lock)
    assert slow.drain() == 0
    assert redis_client.llen(outbox.key) == 5  # not trimmed: the next drainer's rows
    assert _count(database) == 5
    redis_client.delete(outbox.lock_key)
    assert outbox.drain() == 5 and _count(database) == 5  # inserted again as no-ops


def test_while_the_database_is_down_rows_wait_bounded(redis_client, database: str) -> None:
    def down(_rows: list[dict[str, Any]]) -> None:
        raise ConnectionError("database down")

    outbox = RunOutbox(redis_client, "sp", "sandbox", down, limit=5)
    for n in range(8):
        outbox.push(_row(n))
    assert outbox.drain() == 0
    assert redis_client.llen(outbox.key) == 5 and outbox.dropped == 3  # the oldest went
    assert redis_client.get(outbox.lock_key) is None  # released

    back = _outbox(redis_client, database)
    assert back.drain() == 5
    with session_scope(database) as session:
        kept = set(session.scalars(select(JobRun.task_id)))
    assert kept == {f"task-{n}" for n in range(3, 8)}


def test_an_element_that_is_not_a_record_is_dropped_and_the_rest_drained(
    redis_client, database: str
) -> None:
    outbox = _outbox(redis_client, database)
    redis_client.rpush(outbox.key, b"\xff not json", encode_row(_row(1)), "[1, 2]")
    assert outbox.drain() == 3
    assert _count(database) == 1 and redis_client.llen(outbox.key) == 0


def test_sandbox_and_live_have_their_own_outbox(redis_client) -> None:
    sandbox = RunOutbox(redis_client, "sp", "sandbox", lambda rows: None)
    live = RunOutbox(redis_client, "sp", "live", lambda rows: None)
    assert sandbox.key != live.key and sandbox.lock_key != live.lock_key
