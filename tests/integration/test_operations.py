"""Operations with real workers: alerts to a real HTTP receiver, throttled denials, dead
letters and replay, poison quarantine, and nothing lost on a warm shutdown."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from sandbox_platform.coordination.governor import Governor
from sandbox_platform.core.context import bind_correlation_id
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import Alert, DeadLetter, JobRun
from tests.brokers import ON_BOTH_BROKERS
from tests.helpers import Receiver, platform_env, wait_until

pytestmark = pytest.mark.slow
WORKER_APP = "tests.worker_app"


@pytest.fixture
def platform_settings_kwargs(pg_settings_kwargs):  # type: ignore[no-untyped-def]
    return pg_settings_kwargs


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    server = Receiver()
    yield server
    server.close()


def _alerts(url: str, kind: str) -> list[Alert]:
    with session_scope(url) as session:
        return list(session.scalars(select(Alert).where(Alert.kind == kind).order_by(Alert.id)))


def _dead_letters(url: str) -> list[DeadLetter]:
    with session_scope(url) as session:
        return list(session.scalars(select(DeadLetter).order_by(DeadLetter.id)))


def test_final_failure_sends_exactly_one_error_alert_to_the_webhook(
    guarded, worker_factory, platform_app, receiver, pg_databases
) -> None:
    sandbox_db, _ = pg_databases
    worker = worker_factory(platform_app, WORKER_APP, alert_webhook_url=receiver.url)
    with bind_correlation_id("corr-final-failure"):
        guarded.always_fails.delay("fail-calls")
    wait_until(lambda: receiver.posts, timeout=60, message="no alert reached the receiver")
    worker.stop()  # a warm shutdown flushes the webhook queue: nothing else is pending
    failures = [p for p in receiver.posts if p.get("kind") == "task_failed"]
    assert len(failures) == 1, receiver.posts
    assert failures[0]["severity"] == "error"
    assert failures[0]["correlation_id"] == "corr-final-failure"
    assert len(_alerts(sandbox_db, "task_failed")) == 1


def test_governor_denials_produce_one_warning_and_a_suppressed_count(
    guarded, worker_factory, platform_app, redis_client, pg_databases
) -> None:
    """1 an hour: every denied job is re-queued for far longer than GOVERNOR_WAIT_ALERT_SECONDS
    (60 s), so each deferral is a ``governor_wait_exceeded`` warning, throttled to one per
    window (a paced burst, only ``info``, is tests/integration/test_governor_wait_alerts.py)."""
    sandbox_db, _ = pg_databases
    governor = Governor(redis_client, "sp")
    governor.set_limit("test-bucket", 1, 3600.0)
    worker_factory(platform_app, WORKER_APP, alert_throttle_seconds=3)
    for i in range(100):
        guarded.limited.delay("denied-done", i)
    wait_until(
        lambda: governor.denials("test-bucket") >= 99,
        timeout=60,
        message="the governor did not deny the burst",
    )
    warnings = wait_until(lambda: _alerts(sandbox_db, "governor_wait_exceeded"), timeout=10)
    assert len(warnings) == 1 and warnings[0].severity == "warning"
    assert _alerts(sandbox_db, "governor_denied") == []  # one alert per deferral, not two
    assert redis_client.llen("denied-done") == 1

    def second_window() -> list[Alert]:
        guarded.limited.delay("denied-done", 1000)  # one more denial after the window
        found = _alerts(sandbox_db, "governor_wait_exceeded")
        return found if len(found) >= 2 else []

    later = wait_until(second_window, timeout=30, interval=1.0)
    assert later[1].suppressed >= 98


@ON_BOTH_BROKERS
def test_exhausted_job_is_dead_lettered_and_replay_runs_it_once(
    guarded, worker_factory, platform_app, redis_client, pg_databases, platform_settings_kwargs
) -> None:
    sandbox_db, _ = pg_databases
    worker_factory(platform_app, WORKER_APP)
    with bind_correlation_id("corr-replay"):
        guarded.fails_until_fixed.delay("order-9", "fixed-runs")
    letters = wait_until(lambda: _dead_letters(sandbox_db), timeout=60)
    assert letters[0].reason == "retries_exhausted"
    assert letters[0].correlation_id == "corr-replay"

    env = platform_env(**platform_settings_kwargs)
    listed = subprocess.run(
        [sys.executable, "-m", "sandbox_platform", "dead-letters", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[0]["reason"] == "retries_exhausted"

    redis_client.set("fixed", 1)
    for _ in range(2):  # replaying twice must not repeat the effect (same idempotency key)
        replay = subprocess.run(
            [
                sys.executable,
                "-m",
                "sandbox_platform",
                "dead-letters",
                "replay",
                str(letters[0].id),
                "--app",
                WORKER_APP,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert replay.returncode == 0, replay.stderr
        wait_until(lambda: redis_client.llen("fixed-runs") >= 1, timeout=30)

    def replays_done() -> bool:
        with session_scope(sandbox_db) as session:
            runs = session.scalars(
                select(JobRun).where(
                    JobRun.task_name == "tests.fails_until_fixed",
                    JobRun.state.in_(("succeeded", "deduplicated")),
                )
            ).all()
        return len(runs) >= 2

    wait_until(replays_done, timeout=30)
    assert redis_client.lrange("fixed-runs", 0, -1) == [b"order-9"]


@ON_BOTH_BROKERS
def test_poison_job_is_quarantined_after_killing_workers(
    guarded, worker_factory, platform_app, redis_client, pg_databases
) -> None:
    sandbox_db, _ = pg_databases
    worker_factory(platform_app, WORKER_APP, pool="prefork")
    guarded.poison.delay("poison-starts")
    letters = wait_until(
        lambda: _dead_letters(sandbox_db), timeout=90, message="the poison job was not quarantined"
    )
    assert letters[0].reason == "poison"
    assert redis_client.llen("poison-starts") == 3  # default poison_max_deliveries
    alerts = wait_until(  # stored by the worker's alert sink a moment after the dead letter
        lambda: _alerts(sandbox_db, "poison_quarantined"),
        timeout=30,
        message="no poison_quarantined alert",
    )
    assert len(alerts) == 1


def test_warm_shutdown_loses_no_run_record(
    guarded, worker_factory, platform_app, redis_client, pg_databases
) -> None:
    sandbox_db, _ = pg_databases
    worker = worker_factory(platform_app, WORKER_APP)
    for i in range(50):
        guarded.limited.delay("warm-done", i)
    wait_until(lambda: redis_client.llen("warm-done") >= 50, timeout=60)
    worker.stop()  # SIGTERM right away: buffered records must be written before exit
    with session_scope(sandbox_db) as session:
        count = session.scalar(
            select(func.count()).select_from(JobRun).where(JobRun.task_name == "tests.limited")
        )
    assert count == 50


@ON_BOTH_BROKERS
def test_unknown_task_message_is_dead_lettered_not_dropped(
    worker_factory, platform_app, pg_databases
) -> None:
    sandbox_db, _ = pg_databases
    worker = worker_factory(platform_app, WORKER_APP)
    with bind_correlation_id("corr-unknown"):
        sent = platform_app.send_task("tests.no_such_task", args=["kept", 1], kwargs={"k": 2})
    letters = wait_until(
        lambda: _dead_letters(sandbox_db),
        timeout=30,
        message="the unknown-task message was dropped",
    )
    assert letters[0].reason == "unknown_task"
    assert letters[0].task_id == sent.id and letters[0].task_name == "tests.no_such_task"
    assert letters[0].correlation_id == "corr-unknown"
    assert letters[0].message["args"] == ["kept", 1] and letters[0].message["kwargs"] == {"k": 2}
    assert worker.alive()


@ON_BOTH_BROKERS
def test_warm_shutdown_marks_held_jobs_so_they_do_not_count_as_poison(
    guarded, worker_factory, platform_app, redis_client
) -> None:
    """A deploy (warm shutdown) hands back the jobs a worker holds; kombu flags them
    redelivered like a crash would, so the worker marks them as clean restores first."""
    from sandbox_platform.coordination.poison import count_redelivery, poison_keys

    worker = worker_factory(platform_app, WORKER_APP)
    # (below both brokers' redelivery timeouts: Redis 3600 s, RabbitMQ's consumer timeout 1800 s)
    held = guarded.limited.apply_async(("held-done", 1), countdown=1200)
    wait_until(lambda: _held(platform_app, worker), timeout=30, message="the job was not held")
    worker.stop()
    assert redis_client.exists(poison_keys("sp", held.id)[0]) == 1
    assert count_redelivery(redis_client, "sp", held.id) == 0  # the mark is consumed
    assert count_redelivery(redis_client, "sp", held.id) == 1  # a lost worker would count
    assert redis_client.llen("held-done") == 0


def _held(app, worker) -> bool:  # type: ignore[no-untyped-def]
    scheduled = app.control.inspect(destination=[worker.hostname], timeout=1.0).scheduled()
    return bool(scheduled and scheduled.get(worker.hostname))
