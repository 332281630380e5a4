"""Old and new workers side by side during a rolling upgrade: the previous release (0.2, the
commit before this version's broker and run-record changes, run from ``git archive``) and this
version consume the same queue, on the same Redis and database, while jobs and their
re-submissions are published by both. Every idempotent job has its effect exactly once.

The previous release reads messages this version publishes (and the other way round); the
database is upgraded first (``db upgrade``: the new ``run_key`` column is nullable, so the
old workers' run records still insert)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import DeadLetter, Effect
from sandbox_platform.procs.worker import WorkerSubprocess
from tests.helpers import platform_env, wait_until
from tests.releases import archived_tree, run_python

pytestmark = pytest.mark.slow
# The last commit of 0.2 before this version (by id: a plain clone carries no tags).
PREVIOUS = "6c17972"
JOBS = 120
DELAYED = """
import sys
from tests.worker_app import tasks
for n in range(int(sys.argv[1]), int(sys.argv[2])):
    tasks.effect_once.apply_async((f"order-{n}", 0.0, f"side-starts:order-{n}"), countdown=3)
for n in range(5):
    tasks.fails_until_fixed.delay(f"blocked-{n}", "side-fixed-runs")
"""
ENQUEUE = """
import sys
from tests.worker_app import tasks
for n in range(int(sys.argv[1]), int(sys.argv[2])):
    tasks.effect_once.delay(f"order-{n}", 0.02, f"side-starts:order-{n}")
"""


@pytest.fixture(scope="module")
def previous_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return archived_tree(PREVIOUS, tmp_path_factory, "sandbox-platform-0.2")


def _effects(url: str) -> list[str]:
    with session_scope(url) as session:
        return sorted(session.scalars(select(Effect.idempotency_key)))


def test_previous_and_new_workers_side_by_side_run_each_idempotent_job_once(
    previous_tree: Path, platform_app, redis_url, redis_client, tmp_path
) -> None:
    database = f"sqlite:///{tmp_path / 'side.sqlite3'}"
    settings = {"redis_url": redis_url, "database_url": database, "data_dir": tmp_path / "d"}
    new_env = platform_env(**settings)
    old_env = {**new_env, "PYTHONPATH": str(previous_tree)}
    run_python(new_env, "-m", "sandbox_platform", "db", "upgrade")

    workers = [
        WorkerSubprocess(
            "tests.worker_app",
            hostname="previous@localhost",
            env=old_env,
            log_path=tmp_path / "previous.log",
            cwd=previous_tree,
        ),
        WorkerSubprocess(
            "tests.worker_app", hostname="new@localhost", env=new_env, log_path=tmp_path / "new.log"
        ),
    ]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.wait_ready(platform_app, timeout=60)
        half = JOBS // 2
        run_python(old_env, "-c", ENQUEUE, "0", str(half))  # published by the previous release
        run_python(new_env, "-c", ENQUEUE, str(half), str(JOBS))  # by this one
        run_python(old_env, "-c", ENQUEUE, str(half), str(JOBS))  # re-submissions, crosswise
        run_python(new_env, "-c", ENQUEUE, "0", str(half))
        expected = sorted(f"effect:order-{n}" for n in range(JOBS))
        wait_until(lambda: _effects(database) == expected, timeout=120, message="jobs not run")
        wait_until(lambda: redis_client.llen("sandbox_platform.sandbox") == 0, timeout=60)
    finally:
        codes = [worker.stop(timeout=30) for worker in workers]
    assert codes == [0, 0], [worker.log_text()[-2000:] for worker in workers]
    starts = {n: redis_client.lrange(f"side-starts:order-{n}", 0, -1) for n in range(JOBS)}
    assert [n for n, runs in starts.items() if len(runs) != 1] == []  # no job ran twice
    pids = {runs[0].split(b":")[0].decode() for runs in starts.values()}
    solo = {str(worker.process.pid) for worker in workers if worker.process is not None}
    assert pids == solo, (pids, solo)  # both releases took jobs (solo: the worker's own pid)


def _dead_letters(url: str) -> list[int]:
    with session_scope(url) as session:
        return list(session.scalars(select(DeadLetter.id).order_by(DeadLetter.id)))


def test_what_the_previous_release_left_is_consumed_by_the_new_one(
    previous_tree: Path, platform_app, redis_url, redis_client, tmp_path
) -> None:
    """Delayed jobs a 0.2 worker held unacknowledged at its warm shutdown, and dead letters
    it wrote, are run and replayed by this version, each effect once."""
    database = f"sqlite:///{tmp_path / 'left.sqlite3'}"
    settings = {"redis_url": redis_url, "database_url": database, "data_dir": tmp_path / "d"}
    new_env = platform_env(**settings)
    old_env = {**new_env, "PYTHONPATH": str(previous_tree)}
    run_python(new_env, "-m", "sandbox_platform", "db", "upgrade")
    old = WorkerSubprocess(
        "tests.worker_app",
        hostname="previous-left@localhost",
        env=old_env,
        log_path=tmp_path / "previous.log",
        cwd=previous_tree,
    )
    try:
        old.start()
        old.wait_ready(platform_app, timeout=60)
        run_python(old_env, "-c", DELAYED, "0", "10")  # ETA jobs, and jobs that dead-letter
        wait_until(lambda: len(_dead_letters(database)) == 5, timeout=60)
        assert _effects(database) == []  # the delayed ones wait in the old worker
    finally:
        assert old.stop(timeout=30) == 0, old.log_text()[-2000:]  # hands them back

    new = WorkerSubprocess(
        "tests.worker_app", hostname="new-left@localhost", env=new_env, log_path=tmp_path / "n.log"
    )
    try:
        new.start()
        new.wait_ready(platform_app, timeout=60)
        expected = sorted(f"effect:order-{n}" for n in range(10))
        wait_until(lambda: _effects(database) == expected, timeout=90, message="ETA jobs lost")
        redis_client.set("fixed", 1)
        for dead_letter in _dead_letters(database):
            run_python(
                new_env, "-m", "sandbox_platform", "dead-letters", "replay", str(dead_letter),
                "--app", "tests.worker_app",
            )  # fmt: skip
        wait_until(lambda: redis_client.llen("side-fixed-runs") == 5, timeout=60)
    finally:
        assert new.stop(timeout=30) == 0, new.log_text()[-2000:]
    starts = {n: redis_client.llen(f"side-starts:order-{n}") for n in range(10)}
    assert starts == dict.fromkeys(range(10), 1), starts
    replayed = sorted(x.decode() for x in redis_client.lrange("side-fixed-runs", 0, -1))
    assert replayed == [f"blocked-{n}" for n in range(5)]


def test_a_sealed_job_is_refused_unrun_by_the_previous_release_and_run_by_the_new_one(
    previous_tree: Path, redis_url, redis_client, tmp_path
) -> None:
    """Workers first, then producers (docs/upgrading.md): a 0.2 worker that receives a job
    whose arguments are sealed never hands the envelope to the body as the value. The sealed
    mode header makes it dead-letter the job ``wrong_mode`` unrun; this version replays it."""
    from sandbox_platform.app.factory import create_app, release_app
    from sandbox_platform.core.settings import load_settings
    from sandbox_platform.tasks import guarded_task

    database = f"sqlite:///{tmp_path / 'sealed.sqlite3'}"
    settings = {"redis_url": redis_url, "database_url": database, "data_dir": tmp_path / "d"}
    new_env = platform_env(**settings)
    old_env = {**new_env, "PYTHONPATH": str(previous_tree)}
    run_python(new_env, "-m", "sandbox_platform", "db", "upgrade")
    producer = create_app(load_settings(**settings))  # a producer of this version

    def effect_once(order_id: str, sleep_seconds: float, started_key: str) -> None:
        """The 0.2 task's signature; this producer declares its third argument secret."""

    sealed = guarded_task(
        producer, name="tests.effect_once", idempotency_key="{order_id}", secret=["started_key"]
    )(effect_once)
    old = WorkerSubprocess(
        "tests.worker_app",
        hostname="previous-sealed@localhost",
        env=old_env,
        log_path=tmp_path / "previous.log",
        cwd=previous_tree,
    )
    try:
        old.start()
        old.wait_ready(producer, timeout=60)
        sealed.delay("sealed-1", 0.0, "side-starts:sealed-1")
        wait_until(lambda: _dead_letters(database), timeout=60, message="not dead-lettered")
    finally:
        assert old.stop(timeout=30) == 0, old.log_text()[-2000:]
    with session_scope(database) as session:
        letter = session.scalars(select(DeadLetter)).one()
        assert letter.reason == "wrong_mode", letter.reason
        assert letter.message["args"][2]["$sp_secret"] == 1  # kept sealed
    assert redis_client.llen("side-starts:sealed-1") == 0 and _effects(database) == []

    new = WorkerSubprocess(
        "tests.worker_app",
        hostname="new-sealed@localhost",
        env=new_env,
        log_path=tmp_path / "n.log",
    )
    try:
        new.start()
        new.wait_ready(producer, timeout=60)
        run_python(
            new_env, "-m", "sandbox_platform", "dead-letters", "replay", str(letter.id),
            "--app", "tests.worker_app",
        )  # fmt: skip
        wait_until(lambda: _effects(database) == ["effect:sealed-1"], timeout=60)
    finally:
        assert new.stop(timeout=30) == 0, new.log_text()[-2000:]
        release_app(producer)
    assert redis_client.lrange("side-starts:sealed-1", 0, -1)[0].split(b":")[0].isdigit()
