"""A starting worker waits a grace period before it may alert ``heartbeat_stale``."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from sandbox_platform.ops.heartbeat import Heartbeat
from sandbox_platform.ops.watchdog import KIND_STALE, BeatWatchdog
from tests.helpers import json_lines, wait_until

INTERVAL = 3.0  # heartbeat interval of the test; the default grace is 2 x this


def test_watchdog_is_quiet_during_its_startup_grace(redis_client: redis.Redis) -> None:
    now = [100.0]
    fired: list[str] = []
    heartbeat = Heartbeat(redis_client, interval_seconds=0.1)
    redis_client.set(heartbeat.last_key, "1")  # the last tick, long ago: stale at once
    dog = BeatWatchdog(
        heartbeat,
        redis_client,
        alert=lambda _s, kind, _m, _c: fired.append(kind),
        startup_grace_seconds=5.0,
        clock=lambda: now[0],
    )
    assert dog.check() is None
    now[0] += 4.9
    assert dog.check() is None and fired == []
    now[0] += 0.2
    assert dog.check() == KIND_STALE and fired == [KIND_STALE]


def _at(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(record["timestamp"]).replace("Z", "+00:00")).timestamp()


@pytest.mark.slow
def test_a_worker_started_on_a_stale_heartbeat_alerts_after_the_grace(
    worker_factory: Any, platform_app: Any, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # a beat ticked long ago (the heartbeat is stale), as after a restart of everything
    heartbeat = Heartbeat(redis_client, interval_seconds=INTERVAL)
    redis_client.set(heartbeat.last_key, "1")
    worker = worker_factory(platform_app, heartbeat_interval=INTERVAL)
    records = wait_until(
        lambda: [r for r in json_lines(worker.log_text()) if r.get("kind") == KIND_STALE],
        timeout=60,
        message="no heartbeat_stale alert",
    )
    started = next(
        r for r in json_lines(worker.log_text()) if r.get("event") == "worker services started"
    )
    assert _at(records[0]) - _at(started) >= 2 * INTERVAL
