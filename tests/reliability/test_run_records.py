"""Run records under bad values and shutdowns (a real worker on PostgreSQL, which enforces
column lengths where SQLite does not).

Regression (issue 10.3): one correlation id or task id longer than its column made the batched
insert fail, and the whole batch was retried forever: no run record for any later job, even
after a warm shutdown. Now the over-long value is cut to the column with a trailing "…" and
the other rows are written."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from sandbox_platform import bind_correlation_id
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import JobRun
from tests.fault_tasks import register_faults
from tests.helpers import wait_until

pytestmark = pytest.mark.slow
JOBS = 30


@pytest.fixture
def platform_settings_kwargs(pg_settings_kwargs):  # type: ignore[no-untyped-def]
    return pg_settings_kwargs


def _runs(url: str) -> list[JobRun]:
    with session_scope(url) as session:
        runs = list(session.scalars(select(JobRun)))
        session.expunge_all()
        return runs


def _count(url: str) -> int:
    with session_scope(url) as session:
        return int(session.scalar(select(func.count()).select_from(JobRun)) or 0)


def test_an_oversized_id_does_not_block_later_run_records(
    platform_app, worker_factory, pg_databases, redis_client
) -> None:
    sandbox_db, _ = pg_databases
    tasks = register_faults(platform_app)
    worker = worker_factory(platform_app, "tests.faults_app")
    long_correlation = "c" * 200
    long_task_id = f"{uuid.uuid4()}-{'t' * 150}"
    with bind_correlation_id(long_correlation):
        tasks.record.delay("records", "long-correlation")
    tasks.record.apply_async(("records", "long-task-id"), task_id=long_task_id)
    for n in range(JOBS):
        tasks.record.delay("records", f"after-{n}")
    wait_until(lambda: redis_client.llen("records") == JOBS + 2, timeout=60)

    # a warm shutdown right after the last job: what is buffered is written, nothing is lost
    assert worker.stop(timeout=30) == 0
    assert _count(sandbox_db) == JOBS + 2, worker.log_text()[-3000:]

    runs = _runs(sandbox_db)
    assert all(run.state == "succeeded" for run in runs)
    truncated = [run for run in runs if run.correlation_id.endswith("…")]
    assert len(truncated) == 1 and truncated[0].correlation_id.startswith("c" * 60)
    long_ids = [run for run in runs if run.task_id.endswith("…")]
    assert len(long_ids) == 1 and long_task_id.startswith(long_ids[0].task_id[:-1])
    assert "over-long value truncated" in worker.log_text()
