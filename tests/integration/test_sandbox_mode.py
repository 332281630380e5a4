"""Sandbox mode with a real worker, Redis and PostgreSQL: irreversible actions make no real
call and are recorded; live mode makes the real calls; a message never crosses modes."""

from __future__ import annotations

from pathlib import Path

import pytest
from celery import Celery, chain, chord, group
from sqlalchemy import func, select

from sandbox_platform.app.factory import create_app
from sandbox_platform.app.runtime import reset_runtime
from sandbox_platform.core.context import MODE_HEADER, bind_correlation_id
from sandbox_platform.core.settings import load_settings
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import DeadLetter, DryRunEvent
from tests.helpers import wait_until
from tests.pools import ON_BOTH_POOLS
from tests.task_defs import register

pytestmark = [pytest.mark.slow, ON_BOTH_POOLS, pytest.mark.usefixtures("live_ready_limits")]
WORKER_APP = "tests.worker_app"


@pytest.fixture
def platform_settings_kwargs(pg_settings_kwargs):  # type: ignore[no-untyped-def]
    return pg_settings_kwargs


def _count(url: str, model, *where) -> int:  # type: ignore[no-untyped-def]
    with session_scope(url) as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _lines(sink: Path) -> list[str]:
    return sink.read_text().split() if sink.exists() else []


def test_sandbox_intercepts_every_call(
    guarded, worker_factory, platform_app, pg_databases, tmp_path: Path
) -> None:
    sandbox_db, live_db = pg_databases
    worker_factory(platform_app, WORKER_APP)
    sink = tmp_path / "real-calls.txt"
    with bind_correlation_id("corr-sandbox-100"):
        for n in range(100):
            guarded.charge.delay(str(sink), n)
    wait_until(
        lambda: _count(sandbox_db, DryRunEvent) >= 100,
        timeout=60,
        message="100 dry-run events were not recorded",
    )
    assert _lines(sink) == []
    with session_scope(sandbox_db) as session:
        events = session.scalars(select(DryRunEvent)).all()
        assert len(events) == 100
        assert {e.correlation_id for e in events} == {"corr-sandbox-100"}
        assert sorted(e.arguments["n"] for e in events) == list(range(100))
        assert all(e.arguments["sink"] == str(sink) for e in events)
        assert all(e.action == "payment" and e.task_id for e in events)
        assert all(e.simulated_result == {"simulated_charge": e.arguments["n"]} for e in events)
    assert _count(live_db, DryRunEvent) == 0


def test_sandbox_holds_for_chains_groups_chords_children_threads(
    worker_factory, platform_settings_kwargs, pg_databases, tmp_path: Path
) -> None:
    sandbox_db, _live = pg_databases
    kwargs = {**platform_settings_kwargs, "result_backend": "redis"}
    reset_runtime()
    app = create_app(load_settings(**kwargs))
    tasks = register(app)
    worker_factory(app, WORKER_APP, result_backend="redis")
    sink = str(tmp_path / "real-calls.txt")
    chain(tasks.charge.s(sink, 1), tasks.add_mark.s(sink, 2)).apply_async()
    group(tasks.charge.s(sink, n) for n in (3, 4, 5)).apply_async()
    chord([tasks.charge.s(sink, 6), tasks.charge.s(sink, 7)])(tasks.add_mark.s(sink, 8))
    tasks.charge_then_child.delay(sink, 9)  # and its child: 1009
    tasks.charge_in_thread.delay(sink, 10)
    tasks.charge.apply_async((sink, 11), countdown=0.5)
    expected = {1, 2, 3, 4, 5, 6, 7, 8, 9, 1009, 10, 11}
    wait_until(
        lambda: _count(sandbox_db, DryRunEvent) >= len(expected),
        timeout=60,
        message="not every path recorded its dry-run event",
    )
    with session_scope(sandbox_db) as session:
        seen = {e.arguments["n"] for e in session.scalars(select(DryRunEvent))}
    assert seen == expected
    assert _lines(Path(sink)) == []
    reset_runtime()
    app.close()


def test_live_mode_makes_the_real_calls(
    worker_factory, platform_settings_kwargs, pg_databases, tmp_path: Path
) -> None:
    sandbox_db, _live_db = pg_databases
    reset_runtime()
    app = create_app(load_settings(**platform_settings_kwargs, mode="live"))
    tasks = register(app)
    worker_factory(app, WORKER_APP, mode="live")
    sink = tmp_path / "real-calls.txt"
    for n in range(100):
        tasks.charge.delay(str(sink), n)
    wait_until(lambda: len(_lines(sink)) >= 100, timeout=60, message="live calls missing")
    assert sorted(int(x) for x in _lines(sink)) == list(range(100))
    assert _count(sandbox_db, DryRunEvent) == 0
    reset_runtime()
    app.close()


def test_sandbox_message_reaching_live_worker_is_dead_lettered(
    guarded, worker_factory, platform_app, pg_databases, tmp_path: Path, redis_url: str
) -> None:
    _sandbox, live_db = pg_databases
    worker_factory(platform_app, WORKER_APP, mode="live")
    sink = tmp_path / "real-calls.txt"
    # Sandbox and live queues are apart now; only a message forced onto the live queue (by
    # hand, or by an old publisher) reaches a live worker. A plain app publishes where told.
    forced = Celery("forced", broker=redis_url, set_as_current=False)
    with bind_correlation_id("corr-wrong-mode"):
        result = forced.send_task(
            "tests.charge",
            args=[str(sink), 1],
            queue="sandbox_platform.live",
            headers={MODE_HEADER: "sandbox"},
        )
    wait_until(
        lambda: _count(live_db, DeadLetter) >= 1,
        timeout=30,
        message="the wrong-mode message was not dead-lettered",
    )
    with session_scope(live_db) as session:
        letter = session.scalars(select(DeadLetter)).one()
    assert letter.reason == "wrong_mode"
    assert letter.task_id == result.id
    assert letter.correlation_id == "corr-wrong-mode"
    assert letter.message["args"] == [str(sink), 1]
    assert _lines(sink) == []
