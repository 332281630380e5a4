"""LeaderLease against a real Redis: one leader, takeover after ttl, fencing tokens grow."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from sandbox_platform.app.beat_scheduler import LeaderScheduler, tick_id_for
from sandbox_platform.core.errors import SettingsError
from sandbox_platform.ops.leader import LeaderLease, lease_keys
from tests.helpers import poll_until

TTL = 0.6


def _two_clients(redis_url: str) -> tuple[redis.Redis, redis.Redis]:
    return redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)


def test_keys_are_prefixed_and_hash_tagged() -> None:
    assert lease_keys("beat") == ("sp:{leader:beat}:lease", "sp:{leader:beat}:fence")
    assert lease_keys("beat", "x")[0] == "x:{leader:beat}:lease"


def test_two_contenders_one_leader(redis_url: str) -> None:
    ca, cb = _two_clients(redis_url)
    a = LeaderLease(ca, "beat", holder_id="a", ttl_seconds=TTL)
    b = LeaderLease(cb, "beat", holder_id="b", ttl_seconds=TTL)
    token_a = a.try_acquire()
    token_b = b.try_acquire()
    assert token_a == 1
    assert token_b is None
    assert a.is_leader and not b.is_leader
    assert a.current_holder() == b.current_holder() == "a"
    # re-acquiring while holding keeps the same token
    assert a.try_acquire() == 1
    info = b.holder_info()
    assert info is not None and info.token == 1 and 0 < info.ttl_seconds <= TTL


def test_takeover_after_ttl_with_larger_token_and_stale_renew_fails(redis_url: str) -> None:
    ca, cb = _two_clients(redis_url)
    a = LeaderLease(ca, "beat", holder_id="a", ttl_seconds=TTL)
    b = LeaderLease(cb, "beat", holder_id="b", ttl_seconds=TTL)
    token_a = a.try_acquire()
    assert token_a is not None
    # a keeps renewing: b never gets in
    for _ in range(4):
        time.sleep(TTL / 3)
        assert a.renew()
        assert b.try_acquire() is None
    # a stops renewing; b takes over once the lease expires (Redis-side), not before
    started = time.monotonic()
    assert poll_until(lambda: b.try_acquire() is not None, timeout=TTL * 4)
    waited = time.monotonic() - started
    assert waited >= TTL * 0.5, waited
    token_b = b.token
    assert token_b is not None and token_b > token_a
    assert b.current_holder() == "b"
    # a's local view already expired; its renew with the old token is refused by Redis
    assert not a.is_leader
    assert not a.renew()
    assert a.token is None
    assert b.renew()


def test_stale_holder_renew_fails_even_if_it_still_believes(redis_url: str) -> None:
    """A holder paused past its ttl must not extend the newer holder's lease."""
    ca, cb = _two_clients(redis_url)
    a = LeaderLease(ca, "beat", holder_id="a", ttl_seconds=TTL)
    b = LeaderLease(cb, "beat", holder_id="b", ttl_seconds=TTL)
    assert a.try_acquire() == 1
    ca.delete(a.lease_key)  # the lease vanished (expired early, failover, flush)
    assert b.try_acquire() == 2
    # a still thinks it leads (its local deadline has not passed) ...
    assert a.is_leader
    # ... but Redis refuses its renewal, and it steps down
    assert not a.renew()
    assert not a.is_leader
    assert b.current_holder() == "b"
    assert not a.release()  # nothing to release, and b's lease is untouched
    assert b.current_holder() == "b"


def test_release_lets_the_other_in_at_once(redis_url: str) -> None:
    ca, cb = _two_clients(redis_url)
    a = LeaderLease(ca, "beat", holder_id="a", ttl_seconds=30)
    b = LeaderLease(cb, "beat", holder_id="b", ttl_seconds=30)
    assert a.try_acquire() == 1
    assert a.release()
    assert not a.is_leader
    assert b.try_acquire() == 2
    assert a.current_holder() == "b"


def test_clock_offset_comes_from_redis(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    lease = LeaderLease(client, "beat", holder_id="a", ttl_seconds=TTL)
    lease.try_acquire()
    seconds, micros = client.time()
    assert abs(lease.redis_now() - (seconds + micros / 1e6)) < 0.5


# -- LeaderScheduler in process (real Redis broker, no beat loop) ---------------------------


def _beat_app(redis_url: str, **conf: object) -> Celery:
    app = Celery("leader-scheduler-test", set_as_current=False)
    app.conf.update(
        broker_url=redis_url,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue="leader-test",
        beat_schedule={
            "heartbeat": {"task": "t.heartbeat", "schedule": 0.2, "kwargs": {"tick_id": None}},
            "plain": {"task": "t.plain", "schedule": 0.2},
        },
        sandbox_platform_redis_url=redis_url,
        sandbox_platform_leader_ttl=0.5,
        **conf,
    )
    return app


def _queued(client: redis.Redis) -> list[dict[str, Any]]:
    messages = [json.loads(m) for m in client.lrange("leader-test", 0, -1)]
    return [m["headers"] for m in messages]


def test_tick_id_format() -> None:
    assert tick_id_for("heartbeat", 1_700_000_010.0) == "heartbeat:1700000010"
    assert tick_id_for("heartbeat", 1_700_000_010.5) == "heartbeat:1700000010.500"


def test_scheduler_needs_a_redis_url(tmp_path: Path) -> None:
    app = Celery("x", set_as_current=False)
    app.conf.update(broker_url="memory://", sandbox_platform_redis_url=None)
    with pytest.raises(SettingsError):
        LeaderScheduler(app=app, schedule_filename=str(tmp_path / "s"))


def test_only_the_leader_sends_stamped_ticks(redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    a = LeaderScheduler(app=_beat_app(redis_url), schedule_filename=str(tmp_path / "a"))
    b = LeaderScheduler(app=_beat_app(redis_url), schedule_filename=str(tmp_path / "b"))
    try:
        assert a.max_interval == b.max_interval == pytest.approx(0.1)  # ttl / 5
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            time.sleep(min(a.tick(), b.tick(), 0.02))
        assert a.lease.is_leader != b.lease.is_leader
        leader = a if a.lease.is_leader else b
        headers = _queued(client)
        ticks = [h["tick_id"] for h in headers if h["task"] == "t.heartbeat"]
        assert len(ticks) >= 5
        assert len(ticks) == len(set(ticks))  # one beat sent, each slot once
        assert all(h["sp_fencing_token"] == leader.lease.token for h in headers)
        assert {h["task"] for h in headers} == {"t.heartbeat", "t.plain"}
        # the opted-in entry also gets the tick id as a keyword argument
        bodies = [
            json.loads(base64.b64decode(json.loads(m)["body"]))
            for m in client.lrange("leader-test", 0, -1)
        ]
        kwargs = [body[1] for body in bodies if body[1]]
        assert sorted(k["tick_id"] for k in kwargs) == sorted(ticks)
        slots = sorted(round(float(t.rsplit(":", 1)[1]) / 0.2) for t in ticks)
        assert slots == list(range(slots[0], slots[0] + len(slots)))  # no slot skipped
    finally:
        a.close()
        b.close()
    assert LeaderLease(client, "beat", holder_id="x", ttl_seconds=1).current_holder() is None
