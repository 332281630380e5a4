"""The threads pool with every guard on: many jobs of one process interleave (issue 17).

Each job's records, events and log lines carry its own task id and correlation id, and
nothing of one job is visible to the next on the same thread; an idempotent drain leaves no
unacknowledged message and every record done; a warm shutdown with jobs in flight finishes
them or hands them back."""

from __future__ import annotations

import json
import random
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from sandbox_platform.core.context import bind_correlation_id
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import DryRunEvent, JobRun
from tests.helpers import json_lines, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("live_ready_limits")]
WORKER_APP = "tests.worker_app"
THREADS = 8
SEED = 17


def _reports(redis_client, key: str) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    return [json.loads(raw) for raw in redis_client.lrange(key, 0, -1)]


def test_200_interleaved_jobs_each_keep_their_own_ids_and_nothing_leaks(
    guarded, platform_app, worker_factory, redis_client, sqlite_url, tmp_path: Path
) -> None:
    worker = worker_factory(platform_app, WORKER_APP, pool="threads", concurrency=THREADS)
    pauses = random.Random(SEED)
    sink = str(tmp_path / "real-calls.txt")
    expected: dict[str, str] = {}  # task id -> correlation id
    for n in range(200):
        with bind_correlation_id(f"corr-{n:03d}-{uuid.uuid4().hex[:6]}") as correlation_id:
            result = guarded.interleave.delay(n, pauses.uniform(0.0, 0.05), sink, "seen")
        expected[result.id] = correlation_id
    wait_until(lambda: redis_client.llen("seen") == 200, timeout=120, message="jobs missing")

    reports = _reports(redis_client, "seen")
    assert {r["task_id"]: r["correlation_id"] for r in reports} == expected
    assert [r for r in reports if r["found_var"] is not None or r["found_job_n"]] == []
    threads = [r["thread"] for r in reports]
    assert len(set(threads)) > 1 and len(set(threads)) < len(threads)  # threads were reused
    assert not Path(sink).exists()  # sandbox: no real call

    def records() -> list[tuple[str, str | None]] | None:
        with session_scope(sqlite_url) as session:
            runs = session.execute(
                select(JobRun.task_id, JobRun.correlation_id).where(
                    JobRun.task_name == "tests.interleave"
                )
            ).all()
        return [tuple(row) for row in runs] if len(runs) == 200 else None  # type: ignore[misc]

    runs = wait_until(records, timeout=60, message="run records missing")
    assert dict(runs) == expected

    def dry_run_events() -> list[tuple[str, str | None]] | None:
        with session_scope(sqlite_url) as session:
            rows = session.execute(select(DryRunEvent.task_id, DryRunEvent.correlation_id)).all()
        return [tuple(row) for row in rows] if len(rows) >= 200 else None  # type: ignore[misc]

    # a job's run record comes through the outbox, its dry-run event through the worker's
    # buffer: one may be in the database before the other, so wait for the events too
    events = wait_until(dry_run_events, timeout=30, message="dry-run events missing")
    assert dict(events) == expected and len(events) == 200

    lines = [line for line in json_lines(worker.log_text()) if line.get("task_id") in expected]
    mine = [line for line in lines if line.get("event") == "interleaved job"]
    assert len(mine) == 200
    assert all(expected[str(line["task_id"])] == line["correlation_id"] for line in lines)
    by_task = {str(line["task_id"]): line["n"] for line in mine}
    assert {r["task_id"]: r["n"] for r in reports} == by_task


def test_an_idempotent_drain_of_2000_leaves_nothing_unacknowledged(
    guarded, platform_app, worker_factory, redis_client
) -> None:
    worker = worker_factory(platform_app, WORKER_APP, pool="threads", concurrency=THREADS)
    total = 2000
    for start in range(0, total, 500):
        guarded.idem_count.delay_many([(f"k{i}", "count") for i in range(start, start + 500)])
    wait_until(lambda: int(redis_client.get("count") or 0) >= total, timeout=180, message="drain")
    with platform_app.connection_for_read() as connection:
        channel = connection.default_channel
        unacked, index = channel.unacked_key, channel.unacked_index_key

    def jobs_unacked() -> list[str]:
        """Unacknowledged job messages (the reply to the test's own ``control.ping``, left
        there by the test's control client, is not a job)."""
        held = [json.loads(raw) for raw in redis_client.hvals(unacked)]
        return [str(entry[1]) for entry in held if entry[1] != "reply.celery.pidbox"]

    def settled() -> bool:
        return not jobs_unacked() and redis_client.zcard(index) == redis_client.hlen(unacked)

    wait_until(settled, timeout=30, message="job messages left unacknowledged")
    records = list(redis_client.scan_iter(match="sp:idem:r:*", count=1000))
    assert len(records) == total
    states = {redis_client.hget(key, "state") for key in records}
    assert states == {b"done"}
    assert int(redis_client.get("count") or 0) == total  # each effect once
    assert "lease lost" not in worker.log_text()


def test_a_warm_shutdown_finishes_or_hands_back_the_jobs_in_flight(
    guarded, platform_app, worker_factory, redis_client, tmp_path: Path
) -> None:
    """SIGTERM with 8 jobs in flight: the 7 short ones finish, the long one is handed back
    after the shutdown timeout and runs to its end on the next worker; nothing is lost."""
    sink = str(tmp_path / "real-calls.txt")
    first = worker_factory(
        platform_app, WORKER_APP, pool="threads", concurrency=THREADS, shutdown_timeout=2
    )
    ids = [guarded.interleave.delay(n, 1.5, sink, "seen").id for n in range(THREADS - 1)]
    long_id = guarded.interleave.delay(99, 6.0, sink, "seen").id
    queued = [guarded.interleave.delay(100 + n, 0.0, sink, "seen").id for n in range(4)]
    wait_until(
        lambda: (
            "interleaved job" in first.log_text()
            and first.log_text().count('"event": "interleaved job"') >= THREADS
        ),
        timeout=30,
        message="8 jobs were not in flight",
    )
    started = time.monotonic()
    first.stop(timeout=30)
    assert time.monotonic() - started < 15  # well inside the grace period
    finished = {r["task_id"] for r in _reports(redis_client, "seen")}
    assert set(ids) <= finished and long_id not in finished
    worker_factory(platform_app, WORKER_APP, pool="threads", concurrency=THREADS)
    wait_until(
        lambda: {r["task_id"] for r in _reports(redis_client, "seen")} >= {long_id, *queued},
        timeout=60,
        message="the handed-back and queued jobs did not run on the next worker",
    )
    done = [r["task_id"] for r in _reports(redis_client, "seen")]
    assert sorted(done) == sorted({*ids, long_id, *queued})  # each exactly once
