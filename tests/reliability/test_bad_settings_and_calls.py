"""Settings that passed validation but broke later, call-site delays of the wrong type, and
expired jobs, against real worker processes and the test Redis.

Regression (issue 10.8): ``redis://h:notaport/0`` killed the worker with a 62-line traceback; a
non-numeric Redis db, ``HEARTBEAT_INTERVAL=inf`` or ``1e-9`` and ``READINESS_TIMEOUT=inf``
passed validation; ``countdown=nan``, ``countdown="10"`` and ``eta=<float>`` gave
Python-internal errors; an expired job was dropped with only an info line; a live URL naming
the sandbox database through ``127.0.0.2`` or the machine's host name was not recognised."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from sandbox_platform import InvalidDelayError, SettingsError, load_settings
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import JobRun
from tests.fault_tasks import register_faults
from tests.helpers import platform_env, wait_until

BAD_SETTINGS = [
    ({"redis_url": "redis://h:notaport/0"}, "SANDBOX_PLATFORM_REDIS_URL", "port"),
    ({"redis_url": "redis://127.0.0.1:6379/abc"}, "SANDBOX_PLATFORM_REDIS_URL", "database"),
    ({"heartbeat_interval": "inf"}, "SANDBOX_PLATFORM_HEARTBEAT_INTERVAL", "finite"),
    ({"heartbeat_interval": "1e-9"}, "SANDBOX_PLATFORM_HEARTBEAT_INTERVAL", "0.1"),
    ({"readiness_timeout": "inf"}, "SANDBOX_PLATFORM_READINESS_TIMEOUT", "finite"),
]


def _start_worker(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize(("bad", "variable", "word"), BAD_SETTINGS)
@pytest.mark.parametrize("runner", ["sandbox-platform", "celery"])
def test_a_setting_that_cannot_work_stops_the_worker_with_one_clear_line(
    platform_settings_kwargs, bad: dict[str, Any], variable: str, word: str, runner: str
) -> None:
    env = platform_env(**{**platform_settings_kwargs, **bad})
    if runner == "celery":
        command = [sys.executable, "-m", "celery", "-A", "tests.faults_app", "worker"]
    else:
        command = [sys.executable, "-m", "sandbox_platform", "worker", "--app", "tests.faults_app"]
    done = _start_worker(command, env)
    assert done.returncode == 2, (done.stdout[-2000:], done.stderr[-2000:])
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    assert variable in output and word in output
    assert len(done.stderr.strip().splitlines()) <= 3, done.stderr


def test_delays_of_the_wrong_type_are_refused_at_the_call_site(platform_app, redis_client) -> None:
    tasks = register_faults(platform_app)
    before = redis_client.llen("sandbox_platform.sandbox")
    calls: list[dict[str, Any]] = [
        {"countdown": float("nan")},
        {"countdown": float("inf")},
        {"countdown": "10"},
        {"countdown": -5},
        {"eta": time.time() + 10},
        {"eta": "tomorrow"},
    ]
    for options in calls:
        with pytest.raises(InvalidDelayError) as caught:
            tasks.record.apply_async(("never", "x"), **options)
        message = str(caught.value)
        assert message.startswith("faults.record:"), message
        assert ("countdown" in message) or ("eta" in message), message
    assert redis_client.llen("sandbox_platform.sandbox") == before  # nothing was enqueued
    # the right types still work
    tasks.record.apply_async(("fine", "x"), countdown=1.5)
    tasks.record.apply_async(("fine", "y"), eta=datetime.now(UTC) + timedelta(seconds=1))


@pytest.mark.slow
def test_an_expired_job_is_recorded_not_only_logged(
    platform_app, worker_factory, sqlite_url, redis_client
) -> None:
    tasks = register_faults(platform_app)
    expires = datetime.now(UTC) + timedelta(seconds=1)
    expired = tasks.record.apply_async(("expired-effects", "late"), expires=expires)
    wait_until(lambda: datetime.now(UTC) > expires + timedelta(seconds=0.5), interval=0.1)
    worker = worker_factory(platform_app, "tests.faults_app")

    def recorded() -> list[str]:
        with session_scope(sqlite_url) as session:
            query = select(JobRun.state).where(JobRun.task_id == expired.id)
            return list(session.scalars(query))

    wait_until(lambda: recorded() == ["expired"], timeout=60, message="no expired record")
    assert redis_client.llen("expired-effects") == 0  # it did not run
    assert "job expired before it ran; recorded" in worker.log_text()


@pytest.mark.parametrize("live_host", ["127.0.0.2", "localhost", socket.gethostname(), "[::1]"])
def test_a_live_url_naming_the_sandbox_database_another_way_is_refused(
    live_host: str, redis_url: str
) -> None:
    sandbox = "postgresql+psycopg://app@127.0.0.1:5432/orders"
    live = f"postgresql://app:pw@{live_host}/orders"
    with pytest.raises(SettingsError) as caught:
        load_settings(redis_url=redis_url, database_url=sandbox, live_database_url=live)
    assert "same database" in str(caught.value)
    assert ":pw@" not in str(caught.value)  # no credentials in the message
    other = "postgresql://app@127.0.0.1:5432/orders_live"
    load_settings(redis_url=redis_url, database_url=sandbox, live_database_url=other)
