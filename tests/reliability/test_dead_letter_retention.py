"""Dead letters have their own retention: housekeeping (run by a real worker) deletes old
runs after RETENTION_DAYS but keeps a dead letter's arguments, for replay, until
DEAD_LETTER_RETENTION_DAYS; after that the row stays and only its arguments are purged.

Regression (issue 10.10): housekeeping deleted runs, events, ticks and alerts, but dead
letters, with the arguments kept for replay, stayed forever."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from sandbox_platform.app.builtin_tasks import HOUSEKEEPING_TASK
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import DeadLetter, JobRun, utcnow
from sandbox_platform.guards.run_records import FINAL_STATES
from tests.fault_tasks import register_faults
from tests.helpers import platform_env, wait_until

pytestmark = pytest.mark.slow


def _dead_letters(url: str) -> list[DeadLetter]:
    with session_scope(url) as session:
        rows = list(session.scalars(select(DeadLetter).order_by(DeadLetter.id)))
        session.expunge_all()
        return rows


def _final_runs(url: str) -> int:
    with session_scope(url) as session:
        query = select(func.count()).select_from(JobRun).where(JobRun.state.in_(FINAL_STATES))
        return int(session.scalar(query) or 0)


def _age(url: str, model, ids: list[int], days: int) -> None:  # type: ignore[no-untyped-def]
    column = model.created_at if model is DeadLetter else model.started_at
    with session_scope(url) as session:
        session.execute(
            update(model).where(model.id.in_(ids)).values({column: utcnow() - timedelta(days)})
        )


def test_old_dead_letters_lose_their_arguments_after_their_own_retention(
    platform_app, worker_factory, platform_settings_kwargs, sqlite_url, redis_client
) -> None:
    tasks = register_faults(platform_app)
    worker_factory(platform_app, "tests.faults_app")
    for key in ("fails-old", "fails-middle", "fails-new"):
        tasks.always_fails.delay(key)
    wait_until(lambda: len(_dead_letters(sqlite_url)) == 3, timeout=60)
    # a job's ending run record reaches the database through the outbox, after its dead
    # letter: age the runs only once every job's ending record is there
    wait_until(lambda: _final_runs(sqlite_url) == 3, timeout=60)
    old, middle, new = _dead_letters(sqlite_url)
    _age(sqlite_url, DeadLetter, [old.id], days=100)  # past the 90-day default
    _age(sqlite_url, DeadLetter, [middle.id], days=40)  # past the runs' 30 days only
    with session_scope(sqlite_url) as session:
        run_ids = list(session.scalars(select(JobRun.id)))
    _age(sqlite_url, JobRun, run_ids, days=40)

    platform_app.send_task(HOUSEKEEPING_TASK)  # run by the worker, as beat sends it

    def purged() -> bool:
        return _dead_letters(sqlite_url)[0].purged_at is not None

    wait_until(purged, timeout=60, message="housekeeping did not purge the old dead letter")
    with session_scope(sqlite_url) as session:
        assert session.scalar(select(func.count()).select_from(JobRun)) == 0  # runs: 30 days
    old, middle, new = _dead_letters(sqlite_url)
    assert old.message == {"task": "faults.always_fails", "purged": True}
    assert old.reason == "retries_exhausted" and old.detail  # what failed and why stays
    assert middle.purged_at is None and middle.message["args"] == ["fails-middle"]
    assert new.purged_at is None

    env = platform_env(**platform_settings_kwargs)
    replay = [sys.executable, "-m", "sandbox_platform", "dead-letters", "replay"]
    refused = subprocess.run(
        [*replay, str(old.id), "--app", "tests.faults_app"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "its arguments were purged" in refused.stderr + refused.stdout
    assert "Traceback" not in refused.stderr
    replayed = subprocess.run(
        [*replay, str(middle.id), "--app", "tests.faults_app"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert replayed.returncode == 0, replayed.stderr
    wait_until(lambda: redis_client.llen("fails-middle") == 2, timeout=60)  # it ran again
