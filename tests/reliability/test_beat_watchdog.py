"""The platform's own beat (``celery -A beat beat``) and workers, for real: two beats tick
once per slot; the standby takes over within two intervals of the leader's death; with no
beat at all, exactly one critical alert fires across two workers; a restarted beat brings
exactly one recovery alert."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import Alert, HeartbeatTick
from sandbox_platform.ops.leader import LeaderLease
from tests.helpers import platform_env, wait_until

pytestmark = pytest.mark.slow
INTERVAL = 2.0
WORKER_APP = "tests.worker_app"


@pytest.fixture
def platform_settings_kwargs(pg_settings_kwargs):  # type: ignore[no-untyped-def]
    return {**pg_settings_kwargs, "heartbeat_interval": INTERVAL}


@pytest.fixture
def beats(platform_settings_kwargs, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _start_beat(beats, kwargs, tmp_path: Path) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    log = (tmp_path / f"beat-{len(beats) + 1}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "beat", "beat", "--loglevel", "INFO"],
        env=platform_env(**kwargs),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    beats.append(proc)
    return proc


def _ticks(url: str) -> list[HeartbeatTick]:
    with session_scope(url) as session:
        return list(session.scalars(select(HeartbeatTick).order_by(HeartbeatTick.redis_time)))


def _alerts(url: str, kind: str, since: float) -> list[Alert]:
    with session_scope(url) as session:
        rows = session.scalars(select(Alert).where(Alert.kind == kind)).all()
    return [a for a in rows if a.created_at.timestamp() >= since]


def _slot(tick: HeartbeatTick) -> float:
    return float(tick.tick_id.rsplit(":", 1)[1])


def test_two_beats_failover_and_watchdog_alerts(
    beats,
    worker_factory,
    platform_app,
    platform_settings_kwargs,
    pg_databases,
    redis_url,
    tmp_path: Path,
) -> None:
    sandbox_db, _ = pg_databases
    client = redis.Redis.from_url(redis_url)
    _start_beat(beats, platform_settings_kwargs, tmp_path)
    _start_beat(beats, platform_settings_kwargs, tmp_path)
    worker_factory(platform_app, WORKER_APP)
    worker_factory(platform_app, WORKER_APP)

    # Two beats: every tick is recorded once; slots follow each other without duplicates.
    ticks = wait_until(
        lambda: (t := _ticks(sandbox_db)) and len(t) >= 4 and t,
        timeout=60,
        message="beat did not tick",
    )
    slots = [_slot(t) for t in ticks]
    assert len(slots) == len(set(slots))
    assert all(b - a == INTERVAL for a, b in itertools.pairwise(slots))

    # Kill the leader: the standby leads within two intervals.
    lease = LeaderLease(client, "beat", holder_id="observer", ttl_seconds=3)
    holder = lease.holder_info()
    assert holder is not None
    leader = next(p for p in beats if f":{p.pid}:" in holder.holder_id)
    standby = next(p for p in beats if p is not leader)
    seen = {t.tick_id for t in _ticks(sandbox_db)}
    kill_time = float(lease.redis_now())
    os.kill(leader.pid, signal.SIGKILL)
    leader.wait(10)
    new = wait_until(
        lambda: [
            t
            for t in _ticks(sandbox_db)
            if t.tick_id not in seen and _slot(t) > kill_time - INTERVAL
        ],
        timeout=30,
        message="the standby never took over",
    )
    assert _slot(new[0]) <= kill_time + 2 * INTERVAL
    assert (info := lease.holder_info()) is not None and f":{standby.pid}:" in info.holder_id

    # No beat at all: one critical alert across both workers, once.
    stopped_at = time.time()
    os.kill(standby.pid, signal.SIGKILL)
    standby.wait(10)
    stale = wait_until(
        lambda: _alerts(sandbox_db, "heartbeat_stale", stopped_at),
        timeout=30,
        message="no stale-heartbeat alert",
    )
    assert stale[0].severity == "critical"
    assert stale[0].created_at.timestamp() - stopped_at <= 3 * INTERVAL + 1
    time.sleep(2 * INTERVAL)  # both watchdogs keep checking: still exactly one
    assert len(_alerts(sandbox_db, "heartbeat_stale", stopped_at)) == 1

    # Beat back: exactly one recovery alert.
    _start_beat(beats, platform_settings_kwargs, tmp_path)
    wait_until(
        lambda: _alerts(sandbox_db, "heartbeat_recovered", stopped_at),
        timeout=60,
        message="no recovery alert",
    )
    time.sleep(2 * INTERVAL)
    assert len(_alerts(sandbox_db, "heartbeat_recovered", stopped_at)) == 1
    client.close()
