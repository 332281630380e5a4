"""Workers SIGKILLed (the whole process group) in the middle of idempotent work, on the solo
and the prefork pool, on PostgreSQL: every job's effect happens, and happens once.

The jobs a killed worker held are redelivered after the visibility timeout (10 s here) to the
worker started in its place; their idempotency lease (4 s) has expired by then, so they run;
the effect row's unique key is what makes the effect happen once. What a SIGKILL may lose is
the killed process's buffered run records (bounded, documented), never a job or an effect."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select

from sandbox_platform import create_app, load_settings
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import DeadLetter, Effect, JobRun
from tests.fault_tasks import register_faults
from tests.helpers import wait_until

pytestmark = pytest.mark.slow
FAULTS_APP = "tests.faults_app"
JOBS = 300
OVERRIDES = {"visibility_timeout": 10}
#: the documented bound (docs/reliability.md): one 0.2 s flush interval of a busy worker
RECORDS_LOST_PER_KILL = 15


@pytest.fixture
def platform_settings_kwargs(pg_settings_kwargs):  # type: ignore[no-untyped-def]
    return pg_settings_kwargs


def _effect_keys(url: str) -> list[str]:
    with session_scope(url) as session:
        return list(session.scalars(select(Effect.idempotency_key)))


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_sigkilled_workers_lose_no_idempotent_job_and_run_none_twice(
    pool: str, platform_settings_kwargs, worker_factory, pg_databases, redis_client, soak
) -> None:
    sandbox_db, _ = pg_databases
    jobs, kills = (JOBS * 10, 6) if soak else (JOBS, 2)
    app = create_app(load_settings(**{**platform_settings_kwargs, **OVERRIDES}))
    try:
        tasks = register_faults(app)
        workers = [worker_factory(app, FAULTS_APP, pool=pool, **OVERRIDES) for _ in range(2)]
        for n in range(jobs):
            tasks.settle.delay(f"order-{n}", "starts")
        for kill in range(kills):
            share, victim = (kill + 1) / (kills + 1), kill % 2
            wait_until(lambda s=share: len(_effect_keys(sandbox_db)) >= jobs * s, timeout=600)
            workers[victim].kill()  # SIGKILL, mid-work
            workers[victim] = worker_factory(app, FAULTS_APP, pool=pool, **OVERRIDES)

        wait_until(
            lambda: len(_effect_keys(sandbox_db)) >= jobs,
            timeout=600,
            message="jobs held by the killed workers were not run",
        )
        for worker in workers:
            assert worker.stop(timeout=30) == 0  # a warm shutdown writes what is buffered
        keys = Counter(_effect_keys(sandbox_db))
        assert keys == Counter(f"settle:order-{n}" for n in range(jobs))  # each once
        with session_scope(sandbox_db) as session:
            assert session.scalar(select(DeadLetter)) is None  # no job given up on
            succeeded = session.scalars(
                select(JobRun.task_id).where(
                    JobRun.task_name == "faults.settle", JobRun.state == "succeeded"
                )
            ).all()
        # a SIGKILL loses the run records still buffered: about one flush interval's worth
        lost = jobs - len(set(succeeded))
        starts = Counter(redis_client.lrange("starts", 0, -1))
        print(f"{pool}: {sum(starts.values()) - jobs} start(s) repeated, {lost} record(s) lost")
        assert lost <= kills * RECORDS_LOST_PER_KILL
    finally:
        app.close()
