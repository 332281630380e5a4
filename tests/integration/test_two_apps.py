"""Apps of both modes in one process: the job's own app decides (issue 17).

A worker module that builds a sandbox app for its tasks and a live app (to enqueue live jobs),
in either order: a sandbox job's irreversible call is intercepted, a live job's runs for real
exactly once, on a real worker (solo and threads) and with eager ``apply()``. Outside any job,
with both modes present, the call is intercepted (fail safe) and logged once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from sandbox_platform.app.factory import create_app, release_app
from sandbox_platform.core.settings import load_settings
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import DryRunEvent
from tests.helpers import wait_until
from tests.pools import ON_BOTH_POOLS
from tests.task_defs import real_charge, register

pytestmark = [pytest.mark.slow, ON_BOTH_POOLS, pytest.mark.usefixtures("live_ready_limits")]
TWO_APPS = "tests.two_apps"
ORDERS = ("worker-first", "other-first")
JOBS = 4


@pytest.fixture
def platform_settings_kwargs(pg_settings_kwargs):  # type: ignore[no-untyped-def]
    return pg_settings_kwargs


def _events(url: str) -> int:
    with session_scope(url) as session:
        return int(session.scalar(select(func.count()).select_from(DryRunEvent)) or 0)


def _lines(sink: Path) -> list[str]:
    return sink.read_text().split() if sink.exists() else []


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("mode", ["sandbox", "live"])
def test_a_worker_with_an_app_of_the_other_mode_beside_it(
    mode, order, worker_factory, platform_settings_kwargs, pg_databases, tmp_path, monkeypatch
) -> None:
    """A sandbox worker intercepts its jobs' calls (0 real effects, 1 event each); a live
    worker makes each real call exactly once; whichever app the module created first."""
    sandbox_db, live_db = pg_databases
    monkeypatch.setenv("SP_TEST_APP_ORDER", order)
    app = create_app(load_settings(**platform_settings_kwargs, mode=mode))
    tasks = register(app)
    try:
        worker_factory(app, TWO_APPS, mode=mode)
        sink = tmp_path / "real-calls.txt"
        for n in range(JOBS):
            tasks.charge.delay(str(sink), n)
        if mode == "sandbox":
            wait_until(lambda: _events(sandbox_db) == JOBS, message="jobs not intercepted")
            assert _lines(sink) == []
            with session_scope(sandbox_db) as session:
                per_job = session.execute(
                    select(DryRunEvent.task_id, func.count()).group_by(DryRunEvent.task_id)
                ).all()
            assert len(per_job) == JOBS and all(count == 1 for _, count in per_job)
        else:
            wait_until(lambda: len(_lines(sink)) >= JOBS, message="live calls missing")
            assert sorted(int(n) for n in _lines(sink)) == list(range(JOBS))  # each once
            assert _events(sandbox_db) == 0
        assert _events(live_db) == 0
    finally:
        release_app(app)


def _both_apps(order: str, settings: dict[str, object]):  # type: ignore[no-untyped-def]
    modes = ("sandbox", "live") if order == "worker-first" else ("live", "sandbox")
    apps = {mode: create_app(load_settings(**settings, mode=mode), main=mode) for mode in modes}
    return apps, {mode: register(app) for mode, app in apps.items()}


@pytest.mark.parametrize("order", ORDERS)
def test_eager_apply_follows_the_job_s_app(
    order, platform_settings_kwargs, pg_databases, tmp_path
) -> None:
    sandbox_db, live_db = pg_databases
    apps, tasks = _both_apps(order, platform_settings_kwargs)
    try:
        sandbox_sink, live_sink = tmp_path / "sandbox.txt", tmp_path / "live.txt"
        assert tasks["sandbox"].charge.apply((str(sandbox_sink), 1)).get() == {
            "simulated_charge": 1
        }
        assert tasks["live"].charge.apply((str(live_sink), 2)).get() == {"charged": 2}
        wait_until(lambda: _events(sandbox_db) == 1, message="the eager sandbox call")
        assert _lines(sandbox_sink) == []
        assert _lines(live_sink) == ["2"]
        assert _events(live_db) == 0
    finally:
        for app in apps.values():
            release_app(app)


@pytest.mark.parametrize("order", ORDERS)
def test_outside_a_job_both_modes_intercept_and_log_once(
    order, platform_settings_kwargs, pg_databases, tmp_path, capsys
) -> None:
    sandbox_db, _live_db = pg_databases
    apps, _tasks = _both_apps(order, platform_settings_kwargs)
    sink = tmp_path / "outside.txt"
    try:
        capsys.readouterr()
        assert real_charge(str(sink), 1) == {"simulated_charge": 1}
        assert real_charge(str(sink), 2) == {"simulated_charge": 2}
        assert _lines(sink) == []
        logged = capsys.readouterr()
        notes = [
            line
            for line in (logged.out + logged.err).splitlines()
            if "irreversible call outside any job" in line
        ]
        assert len(notes) == 1, notes  # once, naming the call
        assert "tests.task_defs.real_charge" in notes[0]
        wait_until(lambda: _events(sandbox_db) == 2, message="the outside calls' events")
    finally:
        for app in apps.values():
            release_app(app)
