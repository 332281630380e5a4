"""Two real ``celery beat`` processes with LeaderScheduler, one real worker: every tick runs
once, and when the leader is SIGKILLed the standby takes over within two intervals."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import redis
import sqlalchemy as sa

from sandbox_platform.db.engine import get_engine, session_scope
from sandbox_platform.db.models import Base, HeartbeatTick
from sandbox_platform.ops.leader import LeaderLease, LeaseInfo
from tests.beat_app_for_tests import DELIVERIES, RECORDED

pytestmark = pytest.mark.slow

INTERVAL = 1.0
ROOT = Path(__file__).resolve().parents[2]
APP = "tests.beat_app_for_tests"


class Proc:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self._fh: IO[bytes] = log.open("wb")
        self.popen = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._fh, stderr=subprocess.STDOUT
        )
        self.pid = self.popen.pid

    def kill(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        try:
            self.popen.wait(10)
        finally:
            self._fh.close()

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def _poll(predicate: Callable[[], Any], timeout: float, what: str, procs: list[Proc]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        dead = [p for p in procs if p.popen.poll() is not None]
        if dead or time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name} (pid {p.pid}) ---\n{p.text()[-3000:]}" for p in procs)
            reason = f"{[p.name for p in dead]} exited" if dead else f"timeout {timeout}s"
            pytest.fail(f"{what}: {reason}\n{logs}")
        time.sleep(0.05)


@pytest.fixture
def procs() -> Iterator[dict[str, Proc]]:
    started: dict[str, Proc] = {}
    yield started
    for proc in started.values():  # every process, even when the test failed
        proc.kill()


def _redis_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return int(seconds) + int(micros) / 1e6


def _rows(url: str) -> list[HeartbeatTick]:
    with session_scope(url) as session:
        return list(session.scalars(sa.select(HeartbeatTick).order_by(HeartbeatTick.redis_time)))


def _slot(tick_id: str) -> int:
    return int(float(tick_id.rsplit(":", 1)[1]) / INTERVAL)


def test_one_tick_once_and_standby_takes_over(
    redis_url: str, redis_client: redis.Redis, pg_url: str, tmp_path: Path, procs: dict[str, Proc]
) -> None:
    Base.metadata.create_all(get_engine(pg_url))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_PLATFORM_")}
    env.update(
        PYTHONPATH=str(ROOT),
        C_FORCE_ROOT="1",
        SP_BEAT_TEST_REDIS_URL=redis_url,
        SP_BEAT_TEST_DATABASE_URL=pg_url,
        SP_BEAT_TEST_INTERVAL=str(INTERVAL),
    )
    celery = [sys.executable, "-m", "celery", "-A", APP]
    procs["worker"] = Proc(
        "worker",
        [
            *celery,
            "worker",
            "--pool",
            "solo",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "info",
            "-n",
            f"beattest-{os.getpid()}@%h",
        ],
        env,
        tmp_path / "worker.log",
    )
    for name in ("beat-a", "beat-b"):
        procs[name] = Proc(
            name,
            [
                *celery,
                "beat",
                "--scheduler",
                "sandbox_platform.beat_scheduler:LeaderScheduler",
                "-s",
                str(tmp_path / f"{name}-schedule"),
                "-l",
                "info",
            ],
            env,
            tmp_path / f"{name}.log",
        )
    running = list(procs.values())
    lease = LeaderLease(redis_client, "beat", holder_id="observer", ttl_seconds=1)

    # one leader, ticks flowing
    first: LeaseInfo = _poll(lease.holder_info, 30, "no beat became leader", running)
    _poll(lambda: redis_client.llen(RECORDED) >= 4, 30, "ticks did not start", running)
    by_pid = {str(p.pid): p for p in (procs["beat-a"], procs["beat-b"])}
    leader = by_pid[first.holder_id.split(":")[1]]
    standby = next(p for p in by_pid.values() if p is not leader)

    # while both beats run, only the leader sends: no tick is delivered twice
    before = [json.loads(d) for d in redis_client.lrange(DELIVERIES, 0, -1)]
    assert len({d["kwarg"] for d in before}) == len(before), before
    assert all(d["kwarg"] == d["header"] and d["token"] == first.token for d in before), before

    # SIGKILL the leader; the standby must lead and tick within two intervals
    killed_at = _redis_now(redis_client)
    leader.kill()
    rows_before = {r.tick_id for r in _rows(pg_url)}
    new_row: HeartbeatTick = _poll(
        lambda: next((r for r in _rows(pg_url) if r.redis_time > killed_at), None),
        15,
        "no tick after the leader was killed",
        [procs["worker"], standby],
    )
    takeover = new_row.redis_time - killed_at
    second = lease.holder_info()
    assert second is not None
    assert second.holder_id.split(":")[1] == str(standby.pid)
    assert second.token > first.token
    assert takeover <= 2 * INTERVAL, f"standby took {takeover:.2f}s to tick"
    print(f"takeover: first new tick {takeover:.3f}s after SIGKILL")

    # ticks continue under the new leader
    after_count = len(rows_before) + 4
    _poll(
        lambda: len(_rows(pg_url)) >= after_count,
        15,
        "ticks did not continue",
        [procs["worker"], standby],
    )

    # every tick ran exactly once: rows == distinct recorded == distinct delivered
    rows = [r.tick_id for r in _rows(pg_url)]
    recorded = [t.decode() for t in redis_client.lrange(RECORDED, 0, -1) if isinstance(t, bytes)]
    deliveries = [json.loads(d)["kwarg"] for d in redis_client.lrange(DELIVERIES, 0, -1)]
    assert len(rows) == len(set(rows))
    assert sorted(recorded) == sorted(rows)
    assert set(deliveries) == set(rows)
    # at most the failover slot was sent by both beats (and recorded once)
    assert len(deliveries) - len(set(deliveries)) <= 1, deliveries
    # consecutive slots, except at most one slot lost across the failover
    slots = sorted(_slot(t) for t in rows)
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert all(g >= 1 for g in gaps)
    assert sum(g - 1 for g in gaps) <= 1, slots
