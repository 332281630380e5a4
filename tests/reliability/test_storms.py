"""Storms: many workers hammering one governed resource, many processes enqueueing one
idempotency key while the worker running it is SIGKILLed.

The governor's bound (``capacity + rate x elapsed``) holds across worker processes; a key
enqueued by 20 processes at once is one job, whose effect happens once even when the worker
running it dies and the job is redelivered."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from sandbox_platform import create_app, load_settings
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import DeadLetter, Effect
from tests.fault_tasks import register_faults
from tests.helpers import platform_env, run_at_once, wait_until

pytestmark = pytest.mark.slow
FAULTS_APP = "tests.faults_app"
RATE = 30  # tests/faults_app.py declares fault-bucket at 30 per second (capacity 30)


def test_a_governed_resource_holds_its_bound_across_four_workers(
    platform_app, worker_factory, redis_client, soak
) -> None:
    tasks = register_faults(platform_app)
    for _ in range(4):
        worker_factory(platform_app, FAULTS_APP)
    jobs = 1500 if soak else 150
    for _ in range(jobs):
        tasks.limited_at.delay("hammer")
    wait_until(lambda: redis_client.llen("hammer") == jobs, timeout=jobs / RATE + 120)
    times = sorted(float(t) for t in redis_client.lrange("hammer", 0, -1))
    worst = max(  # over every window [times[first], times[last]]
        (last - first + 1) - (RATE + RATE * (times[last] - times[first]))
        for first in range(len(times))
        for last in range(first, len(times))
    )
    assert worst <= 2, f"{worst:.1f} runs over the bound in some window"  # 2: clock slack
    elapsed = times[-1] - times[0]
    assert elapsed >= (jobs - RATE) / RATE * 0.9  # limited, not just fast


ENQUEUE_ONE_KEY = """
import sys
import redis
from sandbox_platform import create_app, load_settings
from tests.fault_tasks import register_faults
app = create_app(load_settings())
tasks = register_faults(app)
client = redis.Redis.from_url(sys.argv[1])
while not client.exists("go"):
    pass
print(tasks.settle.delay("order-storm", "storm-starts").id)
"""


@pytest.fixture
def platform_settings_kwargs(pg_settings_kwargs):  # type: ignore[no-untyped-def]
    return pg_settings_kwargs


def test_one_key_from_twenty_processes_is_one_effect_even_when_its_worker_dies(
    platform_settings_kwargs, worker_factory, pg_databases, redis_url, redis_client
) -> None:
    sandbox_db, _ = pg_databases
    overrides = {"visibility_timeout": 8}
    settings = {**platform_settings_kwargs, **overrides}
    app = create_app(load_settings(**settings))
    redis_client.set("faults:settle:pause", 30)  # the first run waits: it is killed there
    try:
        register_faults(app)
        first = worker_factory(app, FAULTS_APP, **overrides)
        done = run_at_once(
            ENQUEUE_ONE_KEY, [redis_url], platform_env(**settings), 20,
            lambda: redis_client.set("go", 1),
        )  # fmt: skip
        outputs = [(out, err) for _, out, err in done]
        assert all(code == 0 for code, _, _ in done), [err[-500:] for _, err in outputs]
        assert len({out.strip() for out, _ in outputs}) == 1  # one job id for all twenty

        wait_until(lambda: redis_client.llen("storm-starts") == 1, timeout=60)
        first.kill()  # SIGKILL while it runs the job
        redis_client.delete("faults:settle:pause")
        worker_factory(app, FAULTS_APP, **overrides)

        def effects() -> int:
            with session_scope(sandbox_db) as session:
                return int(session.scalar(select(func.count()).select_from(Effect)) or 0)

        wait_until(lambda: effects() == 1, timeout=90, message="the job was lost with its worker")
        assert redis_client.llen("storm-starts") == 2  # started again after the kill, once
        with session_scope(sandbox_db) as session:
            assert session.scalar(select(DeadLetter)) is None
    finally:
        app.close()
