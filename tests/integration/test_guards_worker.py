"""Guards with real workers: governor re-queues without retries, idempotency across
processes and crashes, retry/backoff, payload checks, and mode-bound sessions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sandbox_platform.app.factory import create_app
from sandbox_platform.app.runtime import reset_runtime
from sandbox_platform.coordination.governor import Governor
from sandbox_platform.core.errors import (
    CountdownTooLongError,
    IdempotencyConflict,
    PayloadError,
    UnknownTaskError,
)
from sandbox_platform.core.settings import load_settings
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import DeadLetter, Effect, JobRun
from sandbox_platform.tasks import enqueue
from tests.brokers import ON_BOTH_BROKERS
from tests.helpers import platform_env, run_at_once, wait_until
from tests.pools import ON_BOTH_POOLS, SOLO_ONLY, THREADS_ON_RABBITMQ
from tests.task_defs import orders, register

pytestmark = [pytest.mark.slow, ON_BOTH_POOLS, pytest.mark.usefixtures("live_ready_limits")]
WORKER_APP = "tests.worker_app"


@pytest.fixture
def platform_settings_kwargs(pg_settings_kwargs):  # type: ignore[no-untyped-def]
    return pg_settings_kwargs


def _runs(url: str, task_name: str) -> list[JobRun]:
    with session_scope(url) as session:
        return list(session.scalars(select(JobRun).where(JobRun.task_name == task_name)))


@ON_BOTH_BROKERS
@THREADS_ON_RABBITMQ
def test_governor_denials_requeue_with_wait_and_never_use_a_retry(
    guarded, worker_factory, platform_app, redis_client, pg_databases
) -> None:
    sandbox_db, _ = pg_databases
    # 2.5 jobs/s after a burst of 5: a worker denies some even when a loaded machine slows
    # it to a few jobs a second (seen on RabbitMQ at 5/s: every job admitted)
    Governor(redis_client, "sp").set_limit("test-bucket", 5, 2.0)
    worker_factory(platform_app, WORKER_APP)
    for i in range(20):
        guarded.limited.delay("limited-done", i)
    wait_until(
        lambda: redis_client.llen("limited-done") >= 20,
        timeout=60,
        message="not every rate-limited job completed",
    )
    assert sorted(int(x) for x in redis_client.lrange("limited-done", 0, -1)) == list(range(20))
    runs = wait_until(
        lambda: (
            (r := _runs(sandbox_db, "tests.limited"))
            and sum(x.state == "succeeded" for x in r) >= 20
            and r
        ),
        timeout=30,
    )
    assert sum(r.state == "deferred" for r in runs) > 0  # some were denied and re-queued
    assert all(r.attempt == 1 for r in runs)  # no retry was ever consumed
    assert not [r for r in runs if r.state in ("retrying", "dead_lettered")]
    assert Governor(redis_client, "sp").denials("test-bucket") > 0


ENQUEUE_SAME_KEY = textwrap.dedent(
    """
    import sys, time, redis
    from sandbox_platform.app.factory import create_app
    from tests.task_defs import register
    app = create_app()
    tasks = register(app)
    r = redis.Redis.from_url(sys.argv[1])
    while not r.exists("go"):
        time.sleep(0.005)
    result = tasks.effect_once.delay("order-77", 0.3, "effect-started")
    print(result.id)
    print(result.get(timeout=60))
    """
)


@ON_BOTH_BROKERS
@SOLO_ONLY  # 20 processes enqueue one key: the dedupe is at enqueue, the worker runs one job
def test_twenty_processes_one_key_one_execution(
    worker_factory, platform_settings_kwargs, pg_databases, redis_url, redis_client
) -> None:
    sandbox_db, _ = pg_databases
    settings = {**platform_settings_kwargs, "result_backend": "redis"}
    reset_runtime()
    app = create_app(load_settings(**settings))
    worker_factory(app, WORKER_APP, result_backend="redis")
    done = run_at_once(
        ENQUEUE_SAME_KEY, [redis_url], platform_env(**settings), 20,
        lambda: redis_client.set("go", 1),
    )  # fmt: skip
    outputs = [(out, err) for _, out, err in done]
    assert all(code == 0 for code, _, _ in done), [o[1][-500:] for o in outputs]
    ids = {out.split()[0] for out, _ in outputs}
    results = {out.strip().splitlines()[1] for out, _ in outputs}
    assert len(ids) == 1, ids
    assert len(results) == 1, results
    assert redis_client.llen("effect-started") == 1
    with session_scope(sandbox_db) as session:
        assert session.scalar(select(func.count()).select_from(Effect)) == 1
    app.close()


@ON_BOTH_BROKERS
def test_same_key_other_arguments_is_a_conflict(guarded, platform_app) -> None:
    guarded.effect_once.delay("order-5", 0.0, "started")
    with pytest.raises(IdempotencyConflict, match="different arguments"):
        guarded.effect_once.delay("order-5", 9.0, "started")


@ON_BOTH_BROKERS
def test_key_runs_again_after_its_ttl(guarded, worker_factory, platform_app, redis_client) -> None:
    worker_factory(platform_app, WORKER_APP)
    first = guarded.ttl_once.delay("k1", "ttl-runs")
    wait_until(lambda: redis_client.llen("ttl-runs") == 1, timeout=30)
    again = guarded.ttl_once.delay("k1", "ttl-runs")
    assert again.id == first.id  # within the TTL: the first job's id, nothing published
    # each try within the TTL answers with the first job (nothing published); after it, the
    # next one is published as a new job
    wait_until(lambda: guarded.ttl_once.delay("k1", "ttl-runs").id != first.id, timeout=10)
    wait_until(
        lambda: redis_client.llen("ttl-runs") == 2,
        timeout=30,
        message="the key did not run again after its TTL",
    )


@ON_BOTH_BROKERS
def test_sigkilled_worker_leaves_effect_exactly_once_after_redelivery(
    guarded, worker_factory, platform_app, redis_client, pg_databases
) -> None:
    sandbox_db, _ = pg_databases
    first = worker_factory(platform_app, WORKER_APP, visibility_timeout=4)
    result = guarded.effect_once.delay("order-crash", 30.0, "crash-started")
    wait_until(lambda: redis_client.llen("crash-started") >= 1, timeout=30)
    os.kill(first.pid, signal.SIGKILL)
    first.kill()
    # The job is redelivered once the visibility timeout passes; the second run sleeps too.
    worker_factory(platform_app, WORKER_APP, visibility_timeout=4)
    wait_until(
        lambda: redis_client.llen("crash-started") >= 2,
        timeout=90,
        message="the job was not redelivered after the worker was killed",
    )
    tokens = [int(x.decode().split(":")[1]) for x in redis_client.lrange("crash-started", 0, -1)]
    assert tokens[1] > tokens[0]  # the reclaim got a larger fencing token

    def effects() -> list[Effect]:
        with session_scope(sandbox_db) as session:
            return list(session.scalars(select(Effect)))

    rows = wait_until(effects, timeout=30, message="the redelivered job wrote no effect")
    assert len(rows) == 1
    assert rows[0].task_id == result.id and rows[0].fencing_token == tokens[1]


@ON_BOTH_BROKERS
def test_retries_then_success_and_exhaustion_dead_letters(
    guarded, worker_factory, platform_app, redis_client, pg_databases
) -> None:
    sandbox_db, _ = pg_databases
    worker_factory(platform_app, WORKER_APP)
    guarded.flaky.delay("flaky-calls", 2)
    failing = guarded.always_fails.delay("always-calls")
    wait_until(lambda: _count_dead(sandbox_db) >= 1, timeout=60, message="no dead letter")
    assert redis_client.llen("always-calls") == 3  # attempts = max_retries + 1
    wait_until(
        lambda: any(r.state == "succeeded" for r in _runs(sandbox_db, "tests.flaky")), timeout=30
    )
    assert int(redis_client.get("flaky-calls") or 0) == 3
    with session_scope(sandbox_db) as session:
        letter = session.scalars(select(DeadLetter)).one()
    assert letter.reason == "retries_exhausted" and letter.task_id == failing.id
    assert "permanent failure" in (letter.detail or "")


def _count_dead(url: str) -> int:
    with session_scope(url) as session:
        return int(session.scalar(select(func.count()).select_from(DeadLetter)) or 0)


@ON_BOTH_BROKERS
def test_bad_enqueues_fail_at_the_call_site(guarded, platform_app, broker) -> None:
    guarded.charge.delay("sink", 1)  # the queue exists (RabbitMQ) and holds one job
    before = broker.queue_length("sandbox_platform.sandbox")
    assert before == 1
    with pytest.raises(PayloadError, match=r"not JSON-serialisable at args\[1\]"):
        guarded.charge.delay("sink", object())
    with pytest.raises(PayloadError, match="over the limit"):
        guarded.charge.delay("x" * 300_000, 1)
    timeout = "consumer timeout" if broker.kind == "rabbitmq" else "visibility timeout"
    with pytest.raises(CountdownTooLongError, match=timeout):
        guarded.charge.apply_async(("sink", 1), countdown=7200)
    with pytest.raises(UnknownTaskError, match=r"tests\.nope"):
        enqueue(platform_app, "tests.nope", [1])
    assert broker.queue_length("sandbox_platform.sandbox") == before  # nothing was published


@ON_BOTH_BROKERS
@pytest.mark.parametrize("mode", ["sandbox", "live"])
def test_platform_session_writes_to_the_mode_database(
    mode: str, worker_factory, platform_settings_kwargs, pg_databases
) -> None:
    sandbox_db, live_db = pg_databases
    from sandbox_platform.db.engine import get_engine

    for url in (sandbox_db, live_db):
        orders.metadata.create_all(get_engine(url))
    reset_runtime()
    app = create_app(load_settings(**platform_settings_kwargs, mode=mode))
    tasks = register(app)
    worker_factory(app, WORKER_APP, mode=mode)
    tasks.write_order.delay(f"written-in-{mode}")
    target, other = (sandbox_db, live_db) if mode == "sandbox" else (live_db, sandbox_db)

    def rows(url: str) -> list[str]:
        with session_scope(url) as session:
            return list(session.scalars(select(orders.c.value)))

    wait_until(lambda: rows(target) == [f"written-in-{mode}"], timeout=30)
    assert rows(other) == []
    app.close()


def test_sandbox_reset_refuses_the_live_database(pg_databases, tmp_path: Path) -> None:
    sandbox_db, live_db = pg_databases
    env = platform_env(database_url=sandbox_db, live_database_url=live_db, data_dir=tmp_path)
    refused = subprocess.run(
        [sys.executable, "-m", "sandbox_platform", "sandbox", "reset", "--url", live_db, "--yes"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2, refused.stderr
    assert "live database" in refused.stderr and "Traceback" not in refused.stderr
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox_platform",
            "sandbox",
            "reset",
            "--yes",
            "--metadata",
            "tests.task_defs:app_metadata",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    from sqlalchemy import inspect

    from sandbox_platform.db.engine import get_engine

    assert "test_orders" in inspect(get_engine(sandbox_db)).get_table_names()
    assert "test_orders" not in inspect(get_engine(live_db)).get_table_names()
