"""PostgreSQL connections dropped and a 20 s outage (through a TCP proxy the test owns).

Regression (issue 10.2): a database outage at a job's final failure lost the job: the message
was acknowledged though its dead letter could not be written. Now the dead letter is stored
once the database is back (the job is not run again), and no run record is lost."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import Alert, DeadLetter, JobRun
from tests.fault_tasks import register_faults
from tests.faults import TcpProxy, proxied
from tests.helpers import wait_until

pytestmark = pytest.mark.slow
JOBS = 20


@pytest.fixture
def platform_settings_kwargs(pg_settings_kwargs):  # type: ignore[no-untyped-def]
    return pg_settings_kwargs


@pytest.fixture
def proxy(pg_databases) -> Iterator[TcpProxy]:  # type: ignore[no-untyped-def]
    url = sa.make_url(pg_databases[0])
    tcp = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    yield tcp
    tcp.close()


def _count(url: str, model, *where) -> int:  # type: ignore[no-untyped-def]
    with session_scope(url) as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_final_failures_during_an_outage_are_dead_lettered_once_it_ends(
    platform_app, worker_factory, pg_databases, proxy, redis_client
) -> None:
    sandbox_db, _ = pg_databases
    tasks = register_faults(platform_app)
    worker = worker_factory(
        platform_app, "tests.faults_app", database_url=proxied(sandbox_db, proxy)
    )
    proxy.outage()
    for n in range(JOBS):
        tasks.always_fails.delay(f"fails-{n}")
    wait_until(
        lambda: all(redis_client.llen(f"fails-{n}") == 1 for n in range(JOBS)),
        timeout=60,
        message="not every job ran",
    )
    wait_until(  # each store was refused, and the job published again to store it later
        lambda: worker.log_text().count("dead letter not stored (database)") >= JOBS,
        timeout=60,
    )
    assert _count(sandbox_db, DeadLetter) == 0
    proxy.restore()

    wait_until(lambda: _count(sandbox_db, DeadLetter) == JOBS, timeout=90, message="lost")
    wait_until(lambda: _count(sandbox_db, Alert, Alert.kind == "task_failed") == JOBS, timeout=30)
    wait_until(lambda: _count(sandbox_db, JobRun, JobRun.state == "dead_lettered") == JOBS)
    assert all(redis_client.llen(f"fails-{n}") == 1 for n in range(JOBS))  # none ran again


def test_no_run_record_is_lost_across_dropped_connections_and_a_20s_outage(
    platform_app, worker_factory, pg_databases, proxy, redis_client
) -> None:
    sandbox_db, _ = pg_databases
    tasks = register_faults(platform_app)
    worker_factory(platform_app, "tests.faults_app", database_url=proxied(sandbox_db, proxy))
    for n in range(JOBS):
        tasks.record.delay("recorded", f"before-{n}")
    wait_until(lambda: _count(sandbox_db, JobRun) == JOBS, timeout=60)

    proxy.outage()  # every open connection dropped, new ones refused
    started = time.monotonic()
    for n in range(JOBS):
        tasks.record.delay("recorded", f"during-{n}")
    wait_until(lambda: redis_client.llen("recorded") == 2 * JOBS, timeout=60)
    wait_until(lambda: time.monotonic() - started >= 20, timeout=30, interval=0.5)
    proxy.restore()

    wait_until(lambda: _count(sandbox_db, JobRun) == 2 * JOBS, timeout=60, message="records lost")
    assert _count(sandbox_db, JobRun, JobRun.state == "succeeded") == 2 * JOBS
