"""The coordination keys on a real Redis Cluster (3 masters), jobs run by a real worker.

The broker is the normal single-node test Redis (``SP_TEST_REDIS_DB``); the coordination
Redis (governor, idempotency, heartbeat, leader lease, metrics, alert throttle) is a cluster
of three local ``redis-server`` processes this module starts and stops by pid.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster
from sqlalchemy import select

from sandbox_platform.app.builtin_tasks import HEARTBEAT_TASK
from sandbox_platform.coordination.governor import Governor
from sandbox_platform.core.redis_client import get_redis, reset_clients
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import JobRun
from sandbox_platform.ops.heartbeat import Heartbeat
from tests.cluster_tasks import RESOURCES, register
from tests.helpers import platform_env, wait_until

pytestmark = pytest.mark.slow
WORKER_APP = "tests.cluster_app"
#: the cluster's ports (the range this suite may use: 7330-7359)
PORTS = (7341, 7342, 7343)


def _node(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)


def _cluster_ok(port: int) -> bool:
    try:
        info = _node(port).execute_command("CLUSTER INFO")  # parsed by redis-py: a dict
        return bool(info.get("cluster_state") == "ok")
    except redis.RedisError:
        return False


def _answers(port: int) -> bool:
    try:
        return bool(_node(port).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A 3-master Redis Cluster of local redis-server processes, stopped by pid."""
    tmp = tmp_path_factory.mktemp("cluster")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for port in PORTS:
            procs.append(
                subprocess.Popen(
                    ["redis-server", "--port", str(port), "--cluster-enabled", "yes",
                     "--cluster-config-file", f"nodes-{port}.conf", "--dir", str(tmp),
                     "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )  # fmt: skip
        for port, proc in zip(PORTS, procs, strict=True):
            wait_until(
                lambda p=port, pr=proc: _answers(p) or pr.poll() is not None,
                timeout=10,
                message=f"redis-server on {port} did not start",
            )
            if proc.poll() is not None:
                err = (proc.stderr.read() if proc.stderr else b"").decode(errors="replace")
                if "cluster" in err.lower():
                    pytest.skip(f"redis-server has no cluster support: {err.strip()[-200:]}")
                pytest.fail(f"redis-server on {port} exited: {err.strip()[-300:]}")
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in PORTS),
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert created.returncode == 0, created.stdout[-500:] + created.stderr[-500:]
        wait_until(
            lambda: all(_cluster_ok(p) for p in PORTS),
            timeout=30,
            message="the cluster did not reach cluster_state:ok",
        )
        yield "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in PORTS)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


@pytest.fixture
def cluster(cluster_url: str) -> Iterator[redis.Redis]:
    """The platform's client of the cluster, every node flushed before and after the test."""
    for port in PORTS:
        _node(port).flushall()
    reset_clients()
    client = get_redis(cluster_url)
    assert isinstance(client, RedisCluster)
    yield client
    for port in PORTS:
        _node(port).flushall()
    reset_clients()


@pytest.fixture
def platform_settings_kwargs(
    platform_settings_kwargs: dict[str, object], redis_url: str, cluster_url: str
) -> dict[str, object]:
    """Coordination on the cluster; the broker is the single-node test Redis db."""
    return {**platform_settings_kwargs, "redis_url": cluster_url, "broker_url": redis_url}


@pytest.fixture
def tasks(platform_app: Any) -> Any:
    return register(platform_app)


def _runs(url: str, task_name: str) -> list[JobRun]:
    with session_scope(url) as session:
        return list(session.scalars(select(JobRun).where(JobRun.task_name == task_name)))


def _masters_holding(pattern: str) -> set[int]:
    """The ports of the masters that hold a key matching ``pattern``."""
    return {port for port in PORTS if any(True for _ in _node(port).scan_iter(match=pattern))}


def test_governor_limits_hold_and_denials_requeue(
    cluster: redis.Redis,
    tasks: Any,
    worker_factory: Any,
    platform_app: Any,
    redis_client: redis.Redis,
    platform_settings_kwargs: dict[str, object],
) -> None:
    governor = Governor(cluster, "sp")
    governor.set_limit(RESOURCES[0], 5, 1.0)  # the tight one: 5 at once, then 5 a second
    governor.set_limit(RESOURCES[1], 1000, 1.0)
    worker_factory(platform_app, WORKER_APP)
    jobs = 15
    for i in range(jobs):
        tasks.limited.delay(i)
    wait_until(
        lambda: redis_client.llen("cluster-limited") >= jobs,
        timeout=90,
        message="not every rate-limited job ran",
    )
    done = [entry.decode().split() for entry in redis_client.lrange("cluster-limited", 0, -1)]
    assert sorted(int(i) for i, _ in done) == list(range(jobs))  # each ran, and once
    starts = sorted(float(t) for _, t in done)
    # the bound: 5 at once, then 5 per second: 15 runs need at least 2 s
    assert starts[-1] - starts[0] >= 1.9, starts
    url = str(platform_settings_kwargs["database_url"])

    def all_succeeded() -> list[JobRun]:
        runs = _runs(url, "cluster.limited")
        return runs if sum(r.state == "succeeded" for r in runs) >= jobs else []

    runs = wait_until(all_succeeded, timeout=30, message="the runs were not all recorded")
    assert sum(r.state == "deferred" for r in runs) > 0  # denied and re-queued
    assert all(r.attempt == 1 for r in runs)  # never a retry
    assert not [r for r in runs if r.state in ("retrying", "dead_lettered")]
    stats = governor.stats()
    assert stats[RESOURCES[0]]["admitted"] == jobs
    assert stats[RESOURCES[0]]["denials"] > 0
    # each resource's keys are in its own slot; the two resources are on different masters
    slots = {cluster.keyslot(governor.keys(r).state) for r in RESOURCES}
    assert len(slots) == 2
    assert len(_masters_holding("sp:gov:{*}:state")) == 2


def test_same_key_twice_has_its_effect_once(
    cluster: redis.Redis,
    tasks: Any,
    worker_factory: Any,
    platform_app: Any,
    redis_client: redis.Redis,
    platform_settings_kwargs: dict[str, object],
) -> None:
    worker_factory(platform_app, WORKER_APP)
    orders = [f"order-{i}" for i in range(20)]
    first = tasks.once.delay(orders[0])
    again = tasks.once.delay(orders[0])  # enqueue-side dedupe: the first job's id
    assert again.id == first.id
    # a bulk enqueue over keys on every master, one key twice: one call per slot
    results = tasks.once.delay_many([(o,) for o in orders[1:]] + [(orders[1],)])
    assert results[-1].id == results[0].id
    # bypassing the enqueue dedupe: the worker's claim sees the key done
    for order in orders[:3]:
        platform_app.send_task("cluster.once", args=[order])
    url = str(platform_settings_kwargs["database_url"])
    wait_until(
        lambda: (
            sum(r.state in ("succeeded", "deduplicated") for r in _runs(url, "cluster.once"))
            >= len(orders) + 3
        ),
        timeout=60,
        message="the idempotent jobs did not all finish",
    )
    ran = [x.decode() for x in redis_client.lrange("cluster-once", 0, -1)]
    assert sorted(ran) == sorted(orders), ran  # each key's effect once
    states = [r.state for r in _runs(url, "cluster.once")]
    assert states.count("deduplicated") == 3, states
    # the records spread over the masters (each key is its own hash tag)
    assert _masters_holding("sp:idem:r:*") == set(PORTS)


def test_heartbeat_and_readiness_on_the_cluster(
    cluster: redis.Redis,
    worker_factory: Any,
    platform_app: Any,
    platform_settings_kwargs: dict[str, object],
) -> None:
    worker_factory(platform_app, WORKER_APP)
    for resource in RESOURCES:
        Governor(cluster, "sp").set_limit(resource, 100, 1.0)
    platform_app.send_task(HEARTBEAT_TASK, kwargs={"tick_id": f"cluster:{uuid.uuid4().hex}"})
    heartbeat = Heartbeat(cluster, prefix="sp")
    wait_until(lambda: heartbeat.last_tick_age() is not None, timeout=30, message="no tick")
    assert heartbeat.tick_count() == 1
    wait_until(lambda: heartbeat.workers(), timeout=30, message="no worker touched its key")
    env = platform_env(**platform_settings_kwargs)
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox_platform", "readiness", "--json", "--app", WORKER_APP],
        env={**env, "PYTHONPATH": os.getcwd()},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    report = json.loads(proc.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    for name in ("redis", "broker", "worker", "beat", "governor"):
        assert checks[name]["ok"], (name, checks[name], proc.stderr[-500:])


def test_a_cluster_broker_is_refused_in_one_line(tmp_path: Path, cluster_url: str) -> None:
    env = platform_env(redis_url=cluster_url, data_dir=tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox_platform", "readiness", "--json"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "SANDBOX_PLATFORM_BROKER_URL" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
