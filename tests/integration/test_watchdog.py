"""BeatWatchdog against real Redis: one alert per transition, however many workers check."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from sandbox_platform.ops.heartbeat import Heartbeat
from sandbox_platform.ops.watchdog import KIND_RECOVERED, KIND_STALE, BeatWatchdog
from tests.helpers import poll_until

INTERVAL = 0.3

Alert = tuple[str, str, str, dict[str, Any]]


class Recorder:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self._lock = threading.Lock()

    def __call__(self, severity: str, kind: str, message: str, context: dict[str, Any]) -> None:
        with self._lock:
            self.alerts.append((severity, kind, message, context))

    def kinds(self) -> list[str]:
        with self._lock:
            return [a[1] for a in self.alerts]


@pytest.fixture
def clients(redis_url: str) -> Iterator[list[redis.Redis]]:
    made = [redis.Redis.from_url(redis_url) for _ in range(3)]
    yield made
    for c in made:
        c.close()


def _watchdogs(clients: list[redis.Redis], alert: Recorder, **kw: Any) -> list[BeatWatchdog]:
    """Two 'workers', each with its own Redis client and Heartbeat."""
    return [
        BeatWatchdog(Heartbeat(c, interval_seconds=INTERVAL), c, alert=alert, name=f"w{i}", **kw)
        for i, c in enumerate(clients[:2])
    ]


def _hammer(dogs: list[BeatWatchdog], until: Callable[[], bool], timeout: float) -> list[str]:
    """Both watchdogs check concurrently, as fast as they can, until ``until`` or timeout."""
    fired: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def run(dog: BeatWatchdog) -> None:
        while not stop.is_set():
            kind = dog.check()
            if kind:
                with lock:
                    fired.append(kind)

    threads = [threading.Thread(target=run, args=(d,)) for d in dogs for _ in range(2)]
    for t in threads:
        t.start()
    try:
        poll_until(until, timeout)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    return fired


def test_exactly_one_stale_and_one_recovery_alert(clients: list[redis.Redis]) -> None:
    alerts = Recorder()
    dogs = _watchdogs(clients, alerts)
    beat = Heartbeat(clients[2], interval_seconds=INTERVAL)
    beat.record_tick("hb:1")
    assert [d.check() for d in dogs] == [None, None]

    # beat stops: both workers check repeatedly for well past the staleness limit
    started = time.monotonic()
    fired = _hammer(
        dogs,
        until=lambda: time.monotonic() - started > 2 * INTERVAL + 0.5,
        timeout=5,
    )
    assert fired == [KIND_STALE]
    assert alerts.kinds() == [KIND_STALE]
    severity, _kind, message, context = alerts.alerts[0]
    assert severity == "critical" and "stale" in message
    assert context["last_tick_age"] >= 2 * INTERVAL
    assert context["watchdog"] in {"w0", "w1"}

    # beat resumes: both keep checking, one recovery alert
    beat.record_tick("hb:2")
    deadline = time.monotonic() + INTERVAL  # well inside the 2-interval limit
    fired = _hammer(dogs, until=lambda: time.monotonic() > deadline, timeout=1)
    assert fired == [KIND_RECOVERED]
    assert alerts.kinds() == [KIND_STALE, KIND_RECOVERED]
    assert alerts.alerts[1][0] == "info"

    # and it can go stale again (a second, separate incident)
    started = time.monotonic()
    fired = _hammer(
        dogs,
        until=lambda: time.monotonic() - started > 2 * INTERVAL + 0.5,
        timeout=5,
    )
    assert fired == [KIND_STALE]
    assert alerts.kinds() == [KIND_STALE, KIND_RECOVERED, KIND_STALE]


def test_no_tick_ever_alerts_after_grace(clients: list[redis.Redis]) -> None:
    alerts = Recorder()
    dogs = _watchdogs(clients, alerts, grace_seconds=0.4)
    assert [d.check() for d in dogs] == [None, None]  # inside the grace period
    assert alerts.kinds() == []
    assert poll_until(lambda: any(d.check() for d in dogs), timeout=3)
    for d in dogs:
        assert d.check() is None
    assert alerts.kinds() == [KIND_STALE]
    assert alerts.alerts[0][3]["last_tick_age"] is None


def test_failing_alert_is_retried_not_lost(clients: list[redis.Redis]) -> None:
    calls: list[str] = []

    def flaky(severity: str, kind: str, message: str, context: dict[str, Any]) -> None:
        calls.append(kind)
        if len(calls) == 1:
            raise RuntimeError("sink down")

    dog = BeatWatchdog(
        Heartbeat(clients[0], interval_seconds=INTERVAL), clients[0], alert=flaky, grace_seconds=0
    )
    clients[0].set(dog.since_key, "0")  # the cluster's first check was long ago
    with pytest.raises(RuntimeError):
        dog.check()
    assert dog.check() == KIND_STALE
    assert dog.check() is None
    assert calls == [KIND_STALE, KIND_STALE]


def test_background_thread_fires_and_stops(clients: list[redis.Redis]) -> None:
    alerts = Recorder()
    dogs = _watchdogs(clients, alerts)
    beat = Heartbeat(clients[2], interval_seconds=INTERVAL)
    beat.record_tick("hb:1")
    for d in dogs:
        d.start(interval=0.05)
    try:
        assert poll_until(lambda: alerts.kinds() == [KIND_STALE], timeout=3)
        beat.record_tick("hb:2")
        assert poll_until(lambda: alerts.kinds() == [KIND_STALE, KIND_RECOVERED], timeout=3)
    finally:
        for d in dogs:
            d.stop()
    assert all(d._thread is None for d in dogs)
    assert not any(t.name.startswith("sandbox-platform-watchdog-") for t in threading.enumerate())


def _own(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The watchdog's own records (other loggers may log at DEBUG under caplog too)."""
    return [r for r in caplog.records if r.name == "sandbox_platform.ops.watchdog"]


def test_background_thread_logs_errors(
    clients: list[redis.Redis], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(severity: str, kind: str, message: str, context: dict[str, Any]) -> None:
        raise RuntimeError("sink down")

    dog = BeatWatchdog(
        Heartbeat(clients[0], interval_seconds=INTERVAL), clients[0], alert=broken, grace_seconds=0
    )
    clients[0].set(dog.since_key, "0")
    with caplog.at_level("ERROR", logger="sandbox_platform.ops.watchdog"):
        dog.start(interval=0.02)
        try:
            assert poll_until(lambda: len(_own(caplog)) >= 2, timeout=3)
        finally:
            dog.stop()
    assert "heartbeat check failed" in _own(caplog)[0].getMessage()
    assert _own(caplog)[0].exc_info is not None
