"""Workers SIGKILLed (the whole process group) in the middle of idempotent work, on the solo,
threads and prefork pools, on PostgreSQL: every job's effect happens, and happens once, and
every job has exactly one final run record.

The jobs a killed worker held are redelivered after the visibility timeout (10 s here) to the
worker started in its place; their idempotency lease (4 s) has expired by then, so they run;
the effect row's unique key is what makes the effect happen once. A job's final run record is
durable with its acknowledgement (db/outbox.py): a SIGKILL loses none."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select

from sandbox_platform import create_app, load_settings
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import DeadLetter, Effect, JobRun
from sandbox_platform.guards.run_records import FINAL_STATES
from tests.fault_tasks import register_faults
from tests.helpers import wait_until

pytestmark = pytest.mark.slow
FAULTS_APP = "tests.faults_app"
JOBS = 1000
OVERRIDES = {"visibility_timeout": 10}


@pytest.fixture
def platform_settings_kwargs(pg_settings_kwargs):  # type: ignore[no-untyped-def]
    return pg_settings_kwargs


def _effect_keys(url: str) -> list[str]:
    with session_scope(url) as session:
        return list(session.scalars(select(Effect.idempotency_key)))


def _final_records(url: str) -> Counter[str]:
    with session_scope(url) as session:
        return Counter(
            session.scalars(
                select(JobRun.task_id).where(
                    JobRun.task_name == "faults.settle", JobRun.state.in_(FINAL_STATES)
                )
            )
        )


@pytest.mark.parametrize("pool", ["solo", "threads", "prefork"])
def test_sigkilled_workers_lose_no_idempotent_job_and_run_none_twice(
    pool: str, platform_settings_kwargs, worker_factory, pg_databases, redis_client, soak
) -> None:
    sandbox_db, _ = pg_databases
    jobs, kills = (JOBS * 10, 6) if soak else (JOBS, 2)
    app = create_app(load_settings(**{**platform_settings_kwargs, **OVERRIDES}))
    try:
        tasks = register_faults(app)
        workers = [worker_factory(app, FAULTS_APP, pool=pool, **OVERRIDES) for _ in range(2)]
        ids = [tasks.settle.delay(f"order-{n}", "starts").id for n in range(jobs)]
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
        wait_until(
            lambda: len(_final_records(sandbox_db)) >= jobs,
            timeout=120,
            message="final run records missing",
        )
        for worker in workers:
            assert worker.stop(timeout=30) == 0
        keys = Counter(_effect_keys(sandbox_db))
        assert keys == Counter(f"settle:order-{n}" for n in range(jobs))  # each once
        with session_scope(sandbox_db) as session:
            assert session.scalar(select(DeadLetter)) is None  # no job given up on
        records = _final_records(sandbox_db)
        assert records == Counter(ids), "not exactly one final run record per job"
        starts = Counter(redis_client.lrange("starts", 0, -1))
        print(f"{pool}: {sum(starts.values()) - jobs} start(s) repeated, no record lost")
    finally:
        app.close()
