"""The sandbox record has no holes: an irreversible call made from any shape of code a task
contains is intercepted and recorded exactly once with the job's task id and correlation id
(real worker, Redis and PostgreSQL); a failing simulator is named, recorded and never retried."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from sandbox_platform import bind_correlation_id, current_correlation_id
from sandbox_platform.app.runtime import flush_runtime
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import Alert, DeadLetter, DryRunEvent, JobRun
from tests.helpers import wait_until
from tests.sandbox_shapes import SHAPES, register_shapes

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("live_ready_limits")]
SHAPES_APP = "tests.shapes_app"


@pytest.fixture
def platform_settings_kwargs(pg_settings_kwargs):  # type: ignore[no-untyped-def]
    return pg_settings_kwargs


def _events(url: str, correlation_id: str) -> list[DryRunEvent]:
    with session_scope(url) as session:
        query = select(DryRunEvent).where(DryRunEvent.correlation_id == correlation_id)
        return list(session.scalars(query))


def test_every_shape_records_each_call_once_with_its_job(
    platform_app, worker_factory, pg_databases, tmp_path: Path
) -> None:
    sandbox_db, _ = pg_databases
    tasks = register_shapes(platform_app)
    worker_factory(platform_app, SHAPES_APP)
    sink = tmp_path / "real-charges"
    jobs = {}
    for n, kind in enumerate(SHAPES):
        with bind_correlation_id(f"shape-{kind}-{uuid.uuid4().hex[:6]}") as correlation_id:
            jobs[kind] = (tasks.shape.delay(kind, str(sink), n).id, correlation_id)

    for kind, (task_id, correlation_id) in jobs.items():
        events = wait_until(
            lambda cid=correlation_id: _events(sandbox_db, cid),
            timeout=60,
            message=f"{kind}: the intercepted call was not recorded",
        )
        assert len(events) == 1, (kind, [e.id for e in events])
        assert events[0].task_id == task_id, kind
        assert events[0].action == "payment" and events[0].intercepted, kind

    def runs() -> list[str]:
        with session_scope(sandbox_db) as session:
            query = select(JobRun.state).where(JobRun.task_name == "tests.shape")
            return sorted(session.scalars(query))

    wait_until(lambda: len(runs()) >= len(SHAPES), timeout=30, message="runs not recorded")
    assert runs() == ["succeeded"] * len(SHAPES)  # every job succeeded, none retried
    assert not sink.exists()  # the real charge never ran, in any shape


def test_eager_apply_keeps_and_restores_the_callers_correlation_id(
    guarded, pg_databases, tmp_path: Path
) -> None:
    sandbox_db, _ = pg_databases
    with bind_correlation_id("eager-caller") as caller:
        result = guarded.charge.apply(args=[str(tmp_path / "sink"), 5])
        assert current_correlation_id() == caller  # still the caller's, inside the block
    assert current_correlation_id() is None
    assert result.successful()
    flush_runtime()
    (event,) = _events(sandbox_db, caller)
    assert event.task_id == result.id
    assert not (tmp_path / "sink").exists()


def test_a_failing_simulator_is_named_recorded_and_never_retried(
    platform_app, worker_factory, pg_databases
) -> None:
    sandbox_db, _ = pg_databases
    tasks = register_shapes(platform_app)
    worker_factory(platform_app, SHAPES_APP)
    with bind_correlation_id(f"bad-sim-{uuid.uuid4().hex[:6]}") as correlation_id:
        tasks.bad_simulator.delay(100)

    def dead_letters() -> list[DeadLetter]:
        with session_scope(sandbox_db) as session:
            query = select(DeadLetter).where(DeadLetter.correlation_id == correlation_id)
            return list(session.scalars(query))

    (letter,) = wait_until(dead_letters, timeout=60, message="no dead letter")
    assert letter.reason == "simulation_failed"
    assert "SimulationError" in (letter.detail or "") and "'fx'" in (letter.detail or "")
    assert "KeyError('currency')" in (letter.detail or "")
    (event,) = wait_until(lambda: _events(sandbox_db, correlation_id), timeout=30)
    assert event.action == "fx" and "KeyError('currency')" in (event.error or "")

    def runs() -> list[tuple[str, int]]:
        with session_scope(sandbox_db) as session:
            query = select(JobRun).where(JobRun.correlation_id == correlation_id)
            return [(r.state, r.attempt) for r in session.scalars(query)]

    assert wait_until(runs, timeout=30) == [("dead_lettered", 1)]  # no retry
    with session_scope(sandbox_db) as session:
        alerts = list(session.scalars(select(Alert).where(Alert.correlation_id == correlation_id)))
    assert [a.kind for a in alerts] == ["task_failed"]
