"""Apps of both modes in one worker process, with ``async def`` jobs: the job's own app
decides its irreversible calls on the job loop too.

``tests.two_apps`` builds the worker's app (the mode of its environment) and an app of the
other mode, in either order, both with the async tasks of tests/async_tasks.py. A sandbox
worker's async jobs are intercepted (a dry-run event per call, nothing real); a live
worker's async jobs make each real call exactly once. Outside any job a process with both
modes intercepts (fail safe): a live body that lost its job's context on the loop would be
intercepted, and a sandbox body that lost it would still be, but without its task id.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from sandbox_platform.app.factory import create_app, release_app
from sandbox_platform.core.context import bind_correlation_id
from sandbox_platform.core.settings import load_settings
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import DryRunEvent, JobRun
from tests.async_tasks import register_async_tasks
from tests.helpers import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("live_ready_limits")]
TWO_APPS = "tests.two_apps"
ORDERS = ("worker-first", "other-first")
JOBS = 8


@pytest.fixture
def platform_settings_kwargs(pg_settings_kwargs):  # type: ignore[no-untyped-def]
    return pg_settings_kwargs


def _count(url: str, model) -> int:  # type: ignore[no-untyped-def]
    with session_scope(url) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _lines(sink: Path) -> list[str]:
    return sink.read_text().splitlines() if sink.exists() else []


def _succeeded(url: str, ids: dict[str, str]) -> list[JobRun] | None:
    with session_scope(url) as session:
        runs = list(session.scalars(select(JobRun).where(JobRun.task_id.in_(list(ids)))))
    done = [run for run in runs if run.state == "succeeded"]
    return done if len(done) >= len(ids) else None


#: (order, pool): both orders on the threads pool (jobs in flight together on the loop), and
#: the solo pool (its consumer thread hands each body to the loop) in one order
CASES = [(order, "threads") for order in ORDERS] + [("worker-first", "solo")]


@pytest.mark.parametrize(("order", "pool"), CASES)
@pytest.mark.parametrize("mode", ["sandbox", "live"])
def test_async_jobs_follow_their_app_s_mode_beside_an_app_of_the_other(
    mode,
    order,
    pool,
    worker_factory,
    platform_settings_kwargs,
    pg_databases,
    tmp_path,
    monkeypatch,
) -> None:
    sandbox_db, live_db = pg_databases
    monkeypatch.setenv("SP_TEST_APP_ORDER", order)
    app = create_app(load_settings(**platform_settings_kwargs, mode=mode))
    tasks = register_async_tasks(app)
    try:
        concurrency = JOBS if pool == "threads" else 1
        worker_factory(app, TWO_APPS, pool=pool, concurrency=concurrency, mode=mode)
        sink = tmp_path / "real-calls.txt"
        ids: dict[str, str] = {}
        numbers: dict[str, int] = {}
        for n in range(JOBS):
            with bind_correlation_id() as correlation_id:
                task_id = tasks.charge.delay("", 0, str(sink), n).id
            ids[task_id], numbers[task_id] = correlation_id, n
        own_db, other_db = (sandbox_db, live_db) if mode == "sandbox" else (live_db, sandbox_db)
        runs = wait_until(lambda: _succeeded(own_db, ids), timeout=60, message="jobs missing")
        results = {run.task_id: run.result for run in runs}
        if mode == "sandbox":
            assert results == {
                task_id: {
                    "pay": {"simulated_payment": n},
                    "refund": {"simulated_refund": n},
                    "task_id": task_id,
                }
                for task_id, n in numbers.items()
            }
            wait_until(lambda: _count(sandbox_db, DryRunEvent) >= 2 * JOBS, message="events")
            with session_scope(sandbox_db) as session:
                events = list(session.scalars(select(DryRunEvent)))
            assert sorted((e.task_id, e.action) for e in events) == sorted(
                (task_id, action) for task_id in ids for action in ("async_payment", "async_refund")
            )
            assert all(e.correlation_id == ids[str(e.task_id)] for e in events)
            assert _lines(sink) == []  # intercepted: nothing real
        else:
            assert results == {
                task_id: {"pay": {"paid": n}, "refund": {"refunded": n}, "task_id": task_id}
                for task_id, n in numbers.items()
            }
            expected = sorted(f"{kind} {n}" for n in range(JOBS) for kind in ("pay", "refund"))
            assert sorted(_lines(sink)) == expected  # each real call exactly once
            assert _count(sandbox_db, DryRunEvent) == 0
        assert _count(live_db, DryRunEvent) == 0
        assert _count(other_db, JobRun) == 0
    finally:
        release_app(app)
