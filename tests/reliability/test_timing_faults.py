"""Leases, retries and time limits against a short visibility timeout (real workers).

Regressions (issue 10.4, 10.5, 10.9): an idempotency lease longer than the visibility timeout
turned healthy jobs into "poison"; a retry delay reaching the visibility timeout dropped the
job silently; a hung job held its solo consumer forever. Issue 17: on the threads pool a hung
job is dead-lettered at its limit while the other jobs of its process go on."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sandbox_platform import create_app, load_settings
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import Alert, DeadLetter, JobRun
from sandbox_platform.ops.readiness import CONFIG_COUNTDOWN_EXCEEDS_VISIBILITY, ReadinessChecker
from tests.fault_tasks import register_faults
from tests.helpers import platform_env, wait_until

pytestmark = pytest.mark.slow
FAULTS_APP = "tests.faults_app"
SHORT = {"visibility_timeout": 5}


def _count(url: str, model, *where) -> int:  # type: ignore[no-untyped-def]
    with session_scope(url) as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


@pytest.fixture
def short_app(platform_settings_kwargs):  # type: ignore[no-untyped-def]
    app = create_app(load_settings(**{**platform_settings_kwargs, **SHORT}))
    yield app
    app.close()


def test_a_lease_longer_than_the_visibility_timeout_is_not_poison(
    short_app, worker_factory, redis_client, sqlite_url
) -> None:
    tasks = register_faults(short_app)
    worker_factory(short_app, FAULTS_APP, **SHORT)
    worker_factory(short_app, FAULTS_APP, **SHORT)
    tasks.long_idem.delay("order-L", 8.0, "long-runs")  # runs past the 5 s visibility timeout

    def finished() -> bool:
        return _count(sqlite_url, JobRun, JobRun.state == "succeeded") >= 1

    wait_until(finished, timeout=60, message="the long job did not finish")
    wait_until(lambda: redis_client.llen("sandbox_platform.sandbox") == 0, timeout=30)
    assert redis_client.lrange("long-runs", 0, -1) == [b"order-L"]  # its effect, once
    assert _count(sqlite_url, DeadLetter) == 0  # no "poison", no dead letter at all

    report = ReadinessChecker(
        short_app.platform_settings,
        short_app,
        skip=[
            c
            for c in (
                "database",
                "migrations",
                "redis",
                "broker",
                "worker",
                "beat",
                "isolation",
                "dry_run",
                "governor",
            )
        ],
    ).run()
    config = report.get("config")
    assert config is not None and config.code == CONFIG_COUNTDOWN_EXCEEDS_VISIBILITY
    assert "faults.long_idem (idempotency lease 300s)" in config.message


def test_a_retry_delay_reaching_the_visibility_timeout_is_capped_not_dropped(
    short_app, worker_factory, redis_client, sqlite_url
) -> None:
    tasks = register_faults(short_app)
    worker = worker_factory(short_app, FAULTS_APP, **SHORT)
    for n in range(10):
        tasks.slow_retry.delay(f"slow-{n}")  # retry delay 10 s, visibility timeout 5 s
    wait_until(lambda: _count(sqlite_url, DeadLetter) == 10, timeout=90, message="jobs lost")
    assert _count(sqlite_url, DeadLetter, DeadLetter.reason == "retries_exhausted") == 10
    wait_until(lambda: _count(sqlite_url, Alert, Alert.kind == "task_failed") == 10)
    assert all(redis_client.llen(f"slow-{n}") == 3 for n in range(10))  # 1 run + 2 retries
    assert "retry delay capped below the visibility timeout" in worker.log_text()


def test_a_hung_job_on_the_solo_pool_is_stopped_and_dead_lettered(
    platform_settings_kwargs, redis_client, sqlite_url, tmp_path: Path
) -> None:
    settings = {**platform_settings_kwargs, "visibility_timeout": 8}
    app = create_app(load_settings(**settings))
    tasks = register_faults(app)
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox_platform",
            "worker",
            "--processes",
            "1",
            "--pool",
            "solo",
            "--app",
            FAULTS_APP,
        ],
        env=platform_env(**settings),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        tasks.hang.delay("hang-runs")  # time_limit=2, sleeps for an hour
        wait_until(
            lambda: _count(sqlite_url, DeadLetter, DeadLetter.reason == "timed_out") == 1,
            timeout=60,
            message="the hung job was not stopped",
        )
        tasks.record.delay("after-hang", "ran")  # the consumer was started again
        wait_until(lambda: redis_client.lrange("after-hang", 0, -1) == [b"ran"], timeout=60)
        # the broker redelivers the killed job's message after the visibility timeout: dropped
        wait_until(
            lambda: "after its dead letter was stored; dropped" in log.read_text(),
            timeout=60,
            message="the redelivery was not dropped",
        )
        assert redis_client.lrange("hang-runs", 0, -1) == [b"started"]  # it never ran again
        assert _count(sqlite_url, DeadLetter) == 1  # not "poison" either
        assert _count(sqlite_url, Alert, Alert.kind == "task_failed") == 1
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        app.close()


def test_a_hung_job_on_the_threads_pool_is_dead_lettered_and_the_others_go_on(
    platform_settings_kwargs, worker_factory, redis_client, sqlite_url
) -> None:
    """8 jobs in flight on one threads worker; one hangs past its limit (2 s): it is
    dead-lettered ``timed_out`` at once, the other 7 finish on the same process."""
    settings = {**platform_settings_kwargs, "shutdown_timeout": 3}
    app = create_app(load_settings(**settings))
    tasks = register_faults(app)
    try:
        worker = worker_factory(app, FAULTS_APP, pool="threads", concurrency=8, **settings)
        hung = tasks.hang.delay("hang-runs")  # time_limit=2, sleeps for an hour
        others = [tasks.long_idem.delay(f"order-{i}", 4.0, "others") for i in range(7)]
        wait_until(
            lambda: _count(sqlite_url, DeadLetter, DeadLetter.reason == "timed_out") == 1,
            timeout=30,
            message="the hung job was not dead-lettered",
        )
        # the others were in flight with it (4 s each, started before its 2 s deadline)
        assert redis_client.llen("others") == 7
        wait_until(
            lambda: _count(sqlite_url, JobRun, JobRun.state == "succeeded") == 7,
            timeout=30,
            message="the other 7 jobs did not all succeed",
        )
        with session_scope(sqlite_url) as session:
            letter = session.scalars(select(DeadLetter)).one()
            assert letter.task_id == hung.id
            succeeded = session.scalars(select(JobRun.task_id).where(JobRun.state == "succeeded"))
            assert set(succeeded) == {job.id for job in others}
        assert redis_client.lrange("hang-runs", 0, -1) == [b"started"]
        assert worker.alive()  # the process was not stopped
        assert "job past its time limit: dead-lettered" in worker.log_text()
    finally:
        app.close()
