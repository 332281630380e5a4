"""Duplicates are first-class (issue 21.3): a repeat caught at enqueue (an earlier job of the
same idempotency key answers it, nothing is published) is recorded under its own correlation
id, through the run-record outbox's sibling list, into ``sp_enqueue_duplicates``;
``jobs show`` and the dashboard's ``/jobs/<id>`` say "duplicate of job X";
``sandbox_platform_enqueue_deduplicated_total{task}`` counts it and
``sandbox_platform_idempotent_replays_total{task}`` counts the worker runs skipped because the
key was done. Real workers, PostgreSQL, the dashboard as a process.

Regression: ``jobs show <the repeat's request id>`` said nothing carries it, while its HTTP
response named the first job's id; the replays counter had no samples."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from sandbox_platform import bind_correlation_id
from sandbox_platform.db import migrate
from sandbox_platform.db.engine import dispose_engines, session_scope
from sandbox_platform.db.models import EnqueueDuplicate, JobRun
from sandbox_platform.db.outbox import RunOutbox, duplicate_row, duplicates_key, encode_row, run_key
from sandbox_platform.db.recorder import Recorder
from sandbox_platform.ops.records import correlation_timeline
from tests.helpers import platform_env, wait_until

pytestmark = pytest.mark.slow

WORKER_APP = "tests.worker_app"
TASK = "tests.idem_count"


@pytest.fixture
def platform_settings_kwargs(pg_settings_kwargs):  # type: ignore[no-untyped-def]
    return pg_settings_kwargs


def _env(settings: dict[str, object]) -> dict[str, str]:
    env = platform_env(**settings, readiness_timeout=1)
    env["COLUMNS"] = "250"
    return env


def _show(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "sandbox_platform", "jobs", "show", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def _entries(shown: Any) -> list[dict[str, Any]]:
    """The timeline of ``jobs show --json`` (a list, or an object holding ``entries``)."""
    return list(shown["entries"] if isinstance(shown, dict) else shown)


def _duplicates(database: str, correlation_id: str) -> list[EnqueueDuplicate]:
    with session_scope(database) as session:
        query = select(EnqueueDuplicate).where(EnqueueDuplicate.correlation_id == correlation_id)
        return list(session.scalars(query))


def _states(database: str, task_id: str) -> list[str]:
    with session_scope(database) as session:
        return list(session.scalars(select(JobRun.state).where(JobRun.task_id == task_id)))


def _samples(served: Any, name: str) -> dict[str, float]:
    """Samples of ``name`` on the dashboard's /metrics, by task."""
    status, body = served.http.get("/metrics")
    assert status == 200, body[:300]
    return {
        sample.labels.get("task", ""): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name == name
    }


def test_a_repeat_caught_at_enqueue_is_a_duplicate_of_the_first_job(
    guarded: Any,
    platform_app: Any,
    worker_factory: Any,
    dashboard_factory: Any,
    pg_settings_kwargs: dict[str, object],
    redis_client: redis.Redis,
) -> None:
    worker_factory(platform_app, WORKER_APP)
    value = f"dup-{uuid.uuid4().hex[:8]}"
    counter = f"{value}:runs"
    first_cid, again_cid, batch_cid = (f"{name}-{value}" for name in ("req-1", "req-2", "req-3"))
    with bind_correlation_id(first_cid):
        first = guarded.idem_count.delay(value, counter)
    with bind_correlation_id(again_cid):
        again = guarded.idem_count.delay(value, counter)  # a repeat, deduped at enqueue
    with bind_correlation_id(batch_cid):  # a batch's repeat (and a new key beside it)
        batch = guarded.idem_count.delay_many([(value, counter), (f"{value}-b", counter)])
    assert again.id == first.id and batch[0].id == first.id and batch[1].id != first.id
    database = str(pg_settings_kwargs["database_url"])

    def recorded() -> bool:
        ran = _states(database, first.id) == ["succeeded"]
        return ran and bool(_duplicates(database, again_cid) and _duplicates(database, batch_cid))

    wait_until(recorded, timeout=60, interval=0.2, message="the run or the duplicates never came")
    assert redis_client.get(counter) == b"2"  # the key ran once, the batch's new key once
    (row,) = _duplicates(database, again_cid)
    assert (row.task_name, row.idempotency_key, row.duplicate_of) == (
        TASK,
        f"{TASK}:{value}",
        first.id,
    )
    assert [r.duplicate_of for r in _duplicates(database, batch_cid)] == [first.id]

    env = _env(pg_settings_kwargs)
    shown = _show(env, again_cid)
    assert f"duplicate of job {first.id} (correlation id {first_cid})" in shown, shown
    (entry,) = _entries(json.loads(_show(env, again_cid, "--json")))
    assert entry["kind"] == "duplicate" and entry["duplicate_of"] == first.id
    assert entry["duplicate_of_correlation_id"] == first_cid

    served = dashboard_factory()
    status, page = served.http.get(f"/jobs/{again_cid}")
    assert status == 200
    text = page.decode()
    link = f'duplicate of job <a href="/jobs/{first.id}"><code>{first.id}</code></a>'
    assert link in text, text
    assert f'href="/jobs/{first_cid}"' in text
    wait_until(  # the producer pipelines the count with the record: no flush to wait for
        lambda: _samples(served, "sandbox_platform_enqueue_deduplicated_total").get(TASK) == 2,
        timeout=10,
        message="enqueue_deduplicated_total{task} is not 2 (one single repeat, one in a batch)",
    )


def test_racing_enqueues_of_one_key_each_find_their_job(
    guarded: Any,
    platform_app: Any,
    worker_factory: Any,
    pg_settings_kwargs: dict[str, object],
) -> None:
    worker_factory(platform_app, WORKER_APP)
    database = str(pg_settings_kwargs["database_url"])
    pairs = 4
    values = [f"race-{uuid.uuid4().hex[:8]}" for _ in range(pairs)]
    barrier = threading.Barrier(2)
    ids: dict[str, str] = {}  # correlation id -> the job its enqueue answered with

    def enqueue(value: str, correlation_id: str) -> None:
        with bind_correlation_id(correlation_id):
            barrier.wait(timeout=10)
            ids[correlation_id] = guarded.idem_count.delay(value, f"{value}:runs").id

    for value in values:
        threads = [
            threading.Thread(target=enqueue, args=(value, f"{value}-{side}")) for side in ("a", "b")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert len(ids) == 2 * pairs, "an enqueue of the race failed"

    def story(correlation_id: str) -> list[dict[str, Any]]:
        return correlation_timeline(database, correlation_id)

    def settled() -> bool:
        return all(story(f"{v}-{side}") for v in values for side in ("a", "b")) and all(
            "succeeded" in _states(database, ids[f"{v}-a"]) for v in values
        )

    wait_until(settled, timeout=60, interval=0.2, message="a racing enqueue left no record")
    for value in values:
        a, b = f"{value}-a", f"{value}-b"
        assert ids[a] == ids[b], "both enqueues must be answered by one job"
        job = ids[a]
        kinds = {
            side: [(e["kind"], e.get("task_id") or e.get("duplicate_of")) for e in story(side)]
            for side in (a, b)
        }
        ran = [side for side, entries in kinds.items() if entries == [("run", job)]]
        folded = [side for side, entries in kinds.items() if entries == [("duplicate", job)]]
        assert len(ran) == 1 and len(folded) == 1, kinds  # one runs it, the other is a duplicate

    env = _env(pg_settings_kwargs)
    value = values[0]
    for side in (f"{value}-a", f"{value}-b"):
        entries = _entries(json.loads(_show(env, side, "--json")))
        assert {e.get("task_id") or e.get("duplicate_of") for e in entries} == {ids[side]}


def test_metrics_count_repeats_at_enqueue_and_runs_skipped_as_done(
    guarded: Any,
    platform_app: Any,
    worker_factory: Any,
    dashboard_factory: Any,
    pg_settings_kwargs: dict[str, object],
    redis_client: redis.Redis,
) -> None:
    worker_factory(platform_app, WORKER_APP)
    database = str(pg_settings_kwargs["database_url"])
    value = f"replay-{uuid.uuid4().hex[:8]}"
    counter = f"{value}:runs"
    first = guarded.idem_count.delay(value, counter)
    wait_until(lambda: _states(database, first.id) == ["succeeded"], timeout=60, interval=0.2)
    guarded.idem_count.delay(value, counter)  # caught at enqueue: never reaches a worker
    # repeats that reach the worker (send_task: no enqueue-side dedupe): skipped as done
    repeats = [platform_app.send_task(TASK, args=[value, counter]).id for _ in range(2)]

    def skipped() -> bool:
        return all(_states(database, task_id) == ["deduplicated"] for task_id in repeats)

    wait_until(skipped, timeout=60, interval=0.2, message="the repeats were not skipped as done")
    assert redis_client.get(counter) == b"1"
    served = dashboard_factory()
    wait_until(  # the worker flushes its counts about once a second
        lambda: _samples(served, "sandbox_platform_idempotent_replays_total").get(TASK) == 2,
        timeout=15,
        message="idempotent_replays_total{task} is not the 2 runs skipped as done",
    )
    assert _samples(served, "sandbox_platform_enqueue_deduplicated_total") == {TASK: 1}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_duplicates_drain_idempotently_and_never_hold_up_run_records(
    backend: str, request: pytest.FixtureRequest, redis_client: redis.Redis
) -> None:
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    migrate.upgrade(url, "0005")  # not migrated to the duplicates' table yet
    recorder = Recorder(url)
    outbox = RunOutbox(
        redis_client,
        "sp",
        "sandbox",
        lambda rows: recorder.insert_new(JobRun, rows),
        write_duplicates=lambda rows: recorder.insert_new(EnqueueDuplicate, rows),
    )
    now = datetime.now(UTC)
    run = {"task_id": "t-1", "task_name": TASK, "correlation_id": "c-1", "mode": "sandbox"}
    run |= {"state": "succeeded", "attempt": 1, "started_at": now, "finished_at": now}
    run |= {"duration_ms": 1.0, "error": None, "result": None}
    outbox.push({**run, "run_key": run_key("t-1", 1, final=True)})
    repeat = encode_row(duplicate_row(TASK, f"{TASK}:k", "t-1", "c-2"))
    redis_client.rpush(duplicates_key("sp", "sandbox"), repeat)

    outbox.drain()  # the run goes in; the repeat waits for its table
    assert _states(url, "t-1") == ["succeeded"]
    assert redis_client.llen(duplicates_key("sp", "sandbox")) == 1

    migrate.upgrade(url)
    redis_client.rpush(duplicates_key("sp", "sandbox"), repeat)  # pushed twice: one row
    outbox.drain()
    assert redis_client.llen(duplicates_key("sp", "sandbox")) == 0
    with session_scope(url) as session:
        assert session.scalar(select(func.count()).select_from(EnqueueDuplicate)) == 1
    assert [e["duplicate_of"] for e in correlation_timeline(url, "c-2")] == ["t-1"]
    assert correlation_timeline(url, "c-2")[0]["duplicate_of_correlation_id"] == "c-1"
    dispose_engines()
