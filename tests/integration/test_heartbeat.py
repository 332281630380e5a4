"""Heartbeat against real Redis (and PostgreSQL for tick rows)."""

from __future__ import annotations

import threading
import time

import pytest
import redis
import sqlalchemy as sa

from sandbox_platform.db.engine import get_engine, session_scope
from sandbox_platform.db.models import Base, HeartbeatTick
from sandbox_platform.ops.heartbeat import Heartbeat
from tests.helpers import poll_until

INTERVAL = 0.5


def _rows(url: str) -> list[HeartbeatTick]:
    with session_scope(url) as session:
        return list(session.scalars(sa.select(HeartbeatTick)))


@pytest.fixture
def pg_tables(pg_url: str) -> str:
    Base.metadata.create_all(get_engine(pg_url))
    return pg_url


def test_same_tick_twice_redis_only(redis_client: redis.Redis) -> None:
    hb = Heartbeat(redis_client, interval_seconds=INTERVAL)
    assert hb.last_tick_age() is None
    assert hb.record_tick("heartbeat:100", worker="w1") is True
    assert hb.record_tick("heartbeat:100", worker="w2") is False
    assert hb.tick_count() == 1
    age = hb.last_tick_age()
    assert age is not None and 0 <= age < INTERVAL


def test_same_tick_twice_postgres_one_row(redis_url: str, pg_tables: str) -> None:
    a = Heartbeat(
        redis.Redis.from_url(redis_url), interval_seconds=INTERVAL, database_url=pg_tables
    )
    b = Heartbeat(
        redis.Redis.from_url(redis_url), interval_seconds=INTERVAL, database_url=pg_tables
    )
    results = [a.record_tick("heartbeat:200", worker="w1"), b.record_tick("heartbeat:200", "w2")]
    assert sorted(results) == [False, True]
    rows = _rows(pg_tables)
    assert [(r.tick_id, r.worker) for r in rows] == [("heartbeat:200", "w1")]
    assert abs(rows[0].redis_time - a.redis_time()) < 5
    assert a.tick_count() == 1


def test_database_is_the_real_guard(redis_client: redis.Redis, pg_tables: str) -> None:
    """The Redis claim expired (or Redis was flushed): the unique row still says no."""
    hb = Heartbeat(redis_client, interval_seconds=INTERVAL, database_url=pg_tables)
    assert hb.record_tick("heartbeat:300") is True
    redis_client.delete(hb.tick_key("heartbeat:300"))
    assert hb.record_tick("heartbeat:300") is False
    assert len(_rows(pg_tables)) == 1
    assert hb.tick_count() == 1


def test_concurrent_duplicates_record_once(redis_url: str, pg_tables: str) -> None:
    results: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(i: int) -> None:
        hb = Heartbeat(redis.Redis.from_url(redis_url), interval_seconds=1, database_url=pg_tables)
        start.wait()
        ok = hb.record_tick("heartbeat:400", worker=f"w{i}")
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results.count(True) == 1 and results.count(False) == 7
    assert len(_rows(pg_tables)) == 1


def test_failed_insert_withdraws_the_claim(redis_client: redis.Redis, pg_url: str) -> None:
    """No table yet: the insert fails, the claim is withdrawn, a later retry records it."""
    hb = Heartbeat(redis_client, interval_seconds=INTERVAL, database_url=pg_url)
    with pytest.raises(sa.exc.ProgrammingError):
        hb.record_tick("heartbeat:500")
    assert redis_client.exists(hb.tick_key("heartbeat:500")) == 0
    assert hb.last_tick_age() is None
    Base.metadata.create_all(get_engine(pg_url))
    assert hb.record_tick("heartbeat:500") is True


def test_is_healthy_flips_after_two_intervals(redis_client: redis.Redis) -> None:
    hb = Heartbeat(redis_client, interval_seconds=INTERVAL)
    assert not hb.is_healthy()
    hb.record_tick("heartbeat:1")
    assert hb.is_healthy()
    started = time.monotonic()
    assert poll_until(lambda: not hb.is_healthy(), timeout=4 * INTERVAL)
    elapsed = time.monotonic() - started
    assert elapsed >= 2 * INTERVAL - 0.1, elapsed
    age = hb.last_tick_age()
    assert age is not None and age >= 2 * INTERVAL
    assert hb.is_healthy(max_age=10 * INTERVAL)
    hb.record_tick("heartbeat:2")
    assert hb.is_healthy()


def test_worker_ages_and_expiry(redis_client: redis.Redis) -> None:
    hb = Heartbeat(redis_client, interval_seconds=INTERVAL)
    assert hb.workers() == {}
    hb.touch_worker("w1")  # ttl = interval + 1
    hb.touch_worker("w2", ttl_seconds=0.3)
    pttl = redis_client.pttl(hb.worker_key("w1"))
    assert 1000 < pttl <= 1500
    workers = hb.workers()
    assert set(workers) == {"w1", "w2"}
    assert all(0 <= age < 0.3 for age in workers.values())
    assert poll_until(lambda: set(hb.workers()) == {"w1"}, timeout=2)
    assert hb.workers()["w1"] >= 0.3
    assert redis_client.zcard(hb.workers_key) == 1  # the expired one is pruned
    hb.touch_worker("w1")
    assert hb.workers()["w1"] < 0.3


def test_status(redis_client: redis.Redis) -> None:
    hb = Heartbeat(redis_client, interval_seconds=INTERVAL)
    status = hb.status()
    assert status == {
        "interval": INTERVAL,
        "max_age": 2 * INTERVAL,
        "last_tick_age": None,
        "healthy": False,
        "ticks": 0,
        "workers": {},
    }
    hb.record_tick("heartbeat:1")
    hb.record_tick("heartbeat:2")
    hb.touch_worker("w1")
    status = hb.status()
    assert status["healthy"] is True
    assert status["ticks"] == 2
    assert set(status["workers"]) == {"w1"}
    assert 0 <= status["last_tick_age"] < INTERVAL


def test_keys_are_prefixed(redis_client: redis.Redis) -> None:
    hb = Heartbeat(redis_client, interval_seconds=INTERVAL, prefix="tenant")
    hb.record_tick("t:1")
    hb.touch_worker("w1")
    keys = sorted(k.decode() if isinstance(k, bytes) else k for k in redis_client.keys("*"))
    assert keys and all(k.startswith("tenant:{heartbeat}:") for k in keys), keys


def test_invalid_arguments(redis_client: redis.Redis) -> None:
    with pytest.raises(ValueError):
        Heartbeat(redis_client, interval_seconds=0)
    with pytest.raises(ValueError):
        Heartbeat(redis_client).record_tick("")
