"""No false pages: readiness alerts on a verdict change, not once per throttle window.

The probe test runs the real CLI (``sandbox-platform readiness``) every 2 s against a real
Redis and a SQLite database for longer than three alert-throttle windows while the verdict
stays NO-GO; the alerts are read back from the database the CLI wrote them to.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import Alert
from sandbox_platform.ops.alerts import AlertDispatcher, MemorySink, Throttle
from sandbox_platform.ops.heartbeat import Heartbeat
from sandbox_platform.ops.readiness_alerts import KIND_GO, KIND_NO_GO, VerdictAlerts
from tests.helpers import platform_env

ROOT = Path(__file__).resolve().parents[2]
WINDOW = 1.5  # seconds: the alert throttle window, short for the test
PROBE_EVERY = 2.0
PROBE = [sys.executable, "-m", "sandbox_platform", "readiness", "--app", "tests.worker_app"]


def _probe(env: dict[str, str]) -> int:
    """One probe as Kubernetes runs it: the CLI, its exit code."""
    done = subprocess.run(
        [*PROBE, "--skip", "worker", "--timeout", "1"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode


def _alerts(database_url: str, kind: str) -> list[Alert]:
    with session_scope(database_url) as session:
        return list(session.scalars(select(Alert).where(Alert.kind == kind).order_by(Alert.id)))


@pytest.mark.slow
def test_no_go_probes_alert_once_not_once_per_window(
    platform_settings_kwargs: dict[str, object], redis_client: redis.Redis
) -> None:
    env = platform_env(**platform_settings_kwargs, alert_throttle_seconds=WINDOW)
    database_url = str(platform_settings_kwargs["database_url"])
    started = time.monotonic()
    probes = 0
    # NO-GO throughout: no beat has ever ticked (BEAT_STALE), limits missing
    while probes < 4 or time.monotonic() - started < 3 * WINDOW + PROBE_EVERY:
        begun = time.monotonic()
        assert _probe(env) == 1
        probes += 1
        time.sleep(max(0.0, PROBE_EVERY - (time.monotonic() - begun)))
    assert time.monotonic() - started > 3 * WINDOW  # a throttle alone would have sent >= 3
    alerts = _alerts(database_url, KIND_NO_GO)
    assert len(alerts) == 1, [a.message for a in alerts]
    assert alerts[0].severity == "critical"
    assert "BEAT_STALE" in alerts[0].context["reasons"]

    # the reasons change (beat now ticks; still NO-GO for the rest): one more alert
    heartbeat = Heartbeat(redis_client, interval_seconds=10.0, database_url=database_url)
    assert heartbeat.record_tick(f"readiness-alerts:{time.time_ns()}", worker="test")
    assert _probe(env) == 1
    assert _probe(env) == 1
    alerts = _alerts(database_url, KIND_NO_GO)
    assert len(alerts) == 2, [a.message for a in alerts]
    assert "BEAT_STALE" not in alerts[1].context["reasons"]
    assert alerts[1].context["previous_reasons"] == alerts[0].context["reasons"]


class _Report:
    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        self.go = not reasons


def _dispatcher(client: redis.Redis) -> tuple[AlertDispatcher, MemorySink]:
    sink = MemorySink()
    dispatcher = AlertDispatcher(throttle=Throttle(client, window_seconds=0.01, prefix="sp"))
    dispatcher.subscribe(sink)
    return dispatcher, sink


def test_transitions_are_recorded_once_each(redis_client: redis.Redis) -> None:
    dispatcher, sink = _dispatcher(redis_client)
    alerts = VerdictAlerts(dispatcher, redis_client, "sp")
    sequence: list[list[str]] = [
        [],  # a first GO: nothing
        ["NO_WORKER"],  # GO -> NO-GO: critical
        ["NO_WORKER"],  # the same: nothing
        ["NO_WORKER", "BEAT_STALE"],  # other reasons: critical
        ["BEAT_STALE", "NO_WORKER"],  # the same set in another order: nothing
        [],  # back to GO: info
        [],  # still GO: nothing
    ]
    for reasons in sequence:
        alerts(_Report(reasons))
        time.sleep(0.02)  # past the (tiny) throttle window: only the transition logic holds
    seen = sink.alerts
    assert [(a.kind, a.severity.label) for a in seen] == [
        (KIND_NO_GO, "critical"),
        (KIND_NO_GO, "critical"),
        (KIND_GO, "info"),
    ]
    assert seen[2].context["previous_reasons"] == ["BEAT_STALE", "NO_WORKER"]


def test_probes_in_two_processes_share_the_verdict(redis_client: redis.Redis) -> None:
    first, _ = _dispatcher(redis_client)
    second, _ = _dispatcher(redis_client)
    VerdictAlerts(first, redis_client, "sp")(_Report(["NO_WORKER"]))
    VerdictAlerts(second, redis_client, "sp")(_Report(["NO_WORKER"]))
    assert first.alert_count() + second.alert_count() == 1


def test_unreachable_redis_still_pages_through_the_throttle() -> None:
    dead = redis.Redis(host="127.0.0.1", port=7329, socket_connect_timeout=0.5)
    dispatcher = AlertDispatcher(throttle=Throttle(None, window_seconds=60))
    alerts = VerdictAlerts(dispatcher, dead, "sp")
    for _ in range(3):
        alerts(_Report(["REDIS_UNREACHABLE"]))
    assert [a.kind for a in dispatcher.recent(10)] == [KIND_NO_GO]
