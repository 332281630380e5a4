"""An upgrade from 0.1.0 (its release commit, run from ``git archive``) to this version, the
way docs/upgrading.md says: stop 0.1, ``db upgrade``, ``queues migrate``, start the new workers.

Regression (issue 10.11): nothing said what happens to jobs queued and idempotency keys written
by 0.1.0. Here 0.1.0 runs ten idempotent jobs (its keys and effect rows stay), queues ten more
and re-submits five done ones; the new version runs what was queued, honours every key 0.1.0
wrote, and no job runs twice.

"This version" is the checkout, or the built wheel installed in a virtual environment when
``SP_WHEEL_PYTHON`` names its python (``.ci/wheel-job``; tests/releases.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import Effect
from sandbox_platform.procs.worker import WorkerSubprocess
from tests.helpers import platform_env, wait_until
from tests.releases import (
    CurrentWorker,
    archived_tree,
    current_install,
    current_python,
    current_tree,
    run_python,
)

pytestmark = pytest.mark.slow
# The 0.1.0 release commit; by id, not by tag: a plain clone carries the history, not the tags.
OLD = "ea4984dd1f6829e42cea35fa5fe800d130911cfe"
ENQUEUE = """
import sys
from tests.worker_app import tasks
for n in range(int(sys.argv[1]), int(sys.argv[2])):
    tasks.effect_once.delay(f"order-{n}", 0.0, f"upgrade-starts:order-{n}")
"""


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return archived_tree(OLD, tmp_path_factory, "sandbox-platform-0.1.0")


@pytest.fixture(scope="module")
def new_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return current_tree(tmp_path_factory)


def _effects(url: str) -> list[str]:
    with session_scope(url) as session:
        return sorted(session.scalars(select(Effect.idempotency_key)))


def test_jobs_and_keys_of_0_1_are_honoured_and_none_runs_twice(
    old_tree: Path, new_tree: Path, platform_app, redis_url, redis_client, tmp_path
) -> None:
    database = f"sqlite:///{tmp_path / 'upgraded.sqlite3'}"
    settings = {"redis_url": redis_url, "database_url": database, "data_dir": tmp_path / "d"}
    new_env = {**platform_env(**settings), "PYTHONPATH": str(new_tree)}
    old_env = {**new_env, "PYTHONPATH": str(old_tree)}
    new_python = current_python()
    # the new version's code: the wheel's installation when one is tested, else the checkout
    new_code = run_python(
        new_env, "-c", "import sandbox_platform as s; print(s.__file__)", python=new_python
    )
    assert new_code.startswith(str(current_install())), new_code
    run_python(
        old_env,
        "-c",
        f"import sandbox_platform as s; assert s.__file__.startswith({str(old_tree)!r})",
    )
    run_python(old_env, "-m", "sandbox_platform", "db", "upgrade")  # the 0.1 schema

    # 0.1.0 runs ten jobs, then stops; ten more and five re-submissions wait in its queue
    old = WorkerSubprocess(
        "tests.worker_app",
        hostname="old-0-1@localhost",
        env=old_env,
        log_path=tmp_path / "old.log",
        cwd=old_tree,
    )
    try:
        old.start()
        old.wait_ready(platform_app, timeout=60)
        run_python(old_env, "-c", ENQUEUE, "0", "10")
        wait_until(lambda: len(_effects(database)) == 10, timeout=60, message="0.1 did not run")
    finally:
        assert old.stop(timeout=30) == 0, old.log_text()[-2000:]
    run_python(old_env, "-c", ENQUEUE, "10", "20")
    run_python(old_env, "-c", ENQUEUE, "0", "5")

    # the upgrade, as docs/upgrading.md says
    run_python(new_env, "-m", "sandbox_platform", "db", "upgrade", python=new_python)
    moved = run_python(
        new_env,
        *("-m", "sandbox_platform", "queues", "migrate", "--app", "tests.worker_app"),
        python=new_python,
    )
    assert "10 job(s) to sandbox_platform.sandbox" in moved, moved
    new = CurrentWorker(
        "tests.worker_app",
        hostname="new@localhost",
        env=new_env,
        log_path=tmp_path / "new.log",
        cwd=new_tree,
    )
    try:
        new.start()
        new.wait_ready(platform_app, timeout=60)
        # the new version re-submits done ones too
        run_python(new_env, "-c", ENQUEUE, "5", "10", python=new_python)
        run_python(new_env, "-c", ENQUEUE, "20", "25", python=new_python)
        expected = sorted(f"effect:order-{n}" for n in range(25))
        wait_until(lambda: _effects(database) == expected, timeout=90, message="jobs not run")
        wait_until(lambda: redis_client.llen("sandbox_platform") == 0, timeout=30)
    finally:
        assert new.stop(timeout=30) == 0, new.log_text()[-2000:]
    starts = {n: redis_client.llen(f"upgrade-starts:order-{n}") for n in range(25)}
    assert starts == dict.fromkeys(range(25), 1), starts  # no job ran twice
