"""The governor against a real Redis: bounds, shared limits, multi-limit atomicity, failure."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import pytest
import redis

from sandbox_platform.coordination.governor import Governor, resolve_resource
from sandbox_platform.core.errors import GovernorUnavailable

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def gov(redis_client: redis.Redis, prefix: str) -> Governor:
    return Governor(redis_client, prefix=prefix)


def redis_us(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1_000_000 + int(micros)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


def bucket_tokens(gov: Governor, resource: str, name: str) -> float:
    """Tokens stored in one limit's bucket (without refill); full when never touched."""
    keys = gov.keys(resource)
    cfg = gov.client.hget(keys.cfg, name)
    state = gov.client.hget(keys.state, name)
    assert cfg is not None
    _a, b, cap, *_ = (int(x) for x in cfg.split())
    if state is None:
        return cap / b
    units, _last, _b, _cap = (int(x) for x in state.split())
    return units / b


def test_resource_without_limit_is_allowed(gov: Governor) -> None:
    decision = gov.acquire("free")
    assert decision.allowed
    assert decision.remaining == float("inf")
    assert decision.wait_seconds == 0
    assert gov.denials("free") == 0


def test_capacity_then_denial_with_wait(gov: Governor) -> None:
    gov.set_limit("pay", 5, 1)
    decisions = [gov.acquire("pay") for _ in range(5)]
    assert all(d.allowed for d in decisions)
    denied = gov.acquire("pay")
    assert not denied.allowed
    assert 0 < denied.wait_seconds <= 0.2
    assert denied.resource == "pay"
    assert denied.limit == "per_1s"
    assert gov.denials("pay") == 1


def test_denied_caller_is_admitted_after_the_wait(gov: Governor) -> None:
    gov.set_limit("slow", 1, 0.5)
    assert gov.acquire("slow").allowed
    denied = gov.acquire("slow")
    assert not denied.allowed
    start = redis_us(gov.client)
    wait_for(lambda: gov.acquire("slow").allowed, 3, "a refill")
    waited = (redis_us(gov.client) - start) / 1e6
    # the token cannot arrive earlier than announced (1 ms slack for the two TIME reads)
    assert waited >= denied.wait_seconds - 0.001


def test_state_is_kept_as_exact_integers(gov: Governor) -> None:
    """Regression (Lua precision): tostring() keeps 14 digits and a bucket built on it over-admits.

    A microsecond timestamp has 16 digits; the stored one must be the exact Redis time.
    """
    gov.set_limit("exact", 1_000_000, 86400)
    before = redis_us(gov.client)
    assert gov.acquire("exact", cost=3).allowed
    after = redis_us(gov.client)
    raw = gov.client.hget(gov.keys("exact").state, "per_86400s")
    assert raw is not None
    text = raw.decode() if isinstance(raw, bytes) else raw
    units, last_us, b, cap = text.split()
    assert all(part.isdigit() for part in (units, last_us, b, cap))
    assert before <= int(last_us) <= after
    assert int(units) == (1_000_000 - 3) * int(b)


def test_cost_above_capacity_is_never_granted(gov: Governor) -> None:
    gov.set_limit("big", 3, 1)
    decision = gov.acquire("big", cost=4)
    assert not decision.allowed
    assert decision.wait_seconds == float("inf")
    allowed, message = gov.check_limit("big")
    assert allowed
    assert "tokens left" in message


def test_check_limit_messages(gov: Governor) -> None:
    assert gov.check_limit("none") == (True, "none: no limit configured")
    gov.set_limit("email", 1, 60)
    assert gov.check_limit("email")[0]
    allowed, message = gov.check_limit("email")
    assert not allowed
    assert "rate limited" in message
    assert "per_60s" in message


def test_multiple_limits_are_all_or_nothing(gov: Governor) -> None:
    gov.set_limit("api", 10, 1)
    gov.set_limit("api", 7, 86400, name="daily")
    assert [lim.name for lim in gov.limits("api")] == ["daily", "per_1s"]
    assert gov.acquire("api", cost=5).allowed  # per_1s 5 left, daily 2 left
    denied = gov.acquire("api", cost=3)
    assert not denied.allowed
    assert denied.limit == "daily"
    assert denied.wait_seconds > 3600
    # the per-second bucket allowed 3 but gave nothing: the denial took no token anywhere
    assert bucket_tokens(gov, "api", "per_1s") == 5
    assert bucket_tokens(gov, "api", "daily") == 2
    assert gov.acquire("api", cost=2).allowed
    assert bucket_tokens(gov, "api", "daily") < 0.001


def test_set_limit_again_replaces_and_clear_removes(gov: Governor) -> None:
    gov.set_limit("r", 2, 60)
    gov.set_limit("r", 4, 60)
    assert [(lim.limit, lim.capacity) for lim in gov.limits("r")] == [(4, 4)]
    gov.set_limit("r", 4, 60, capacity=1)
    assert gov.acquire("r").allowed
    assert not gov.acquire("r").allowed
    gov.clear_limits("r")
    assert gov.limits("r") == []
    assert gov.acquire("r").remaining == float("inf")


def test_reconfiguring_keeps_what_was_consumed(gov: Governor) -> None:
    gov.set_limit("clip", 100, 3600)
    assert gov.acquire("clip").allowed  # 1 consumed
    gov.set_limit("clip", 100, 3600, capacity=2)
    assert gov.acquire("clip").allowed
    assert not gov.acquire("clip").allowed
    gov.set_limit("clip", 10, 3600)  # the unit changes too; 2 consumed stay consumed
    assert 6.99 < gov.acquire("clip").remaining < 7.01  # 10 - 2 consumed - this one


def test_templated_resources(gov: Governor) -> None:
    def call(*args: Any, **kwargs: Any) -> str:
        return resolve_resource("api:{user_id}", args, kwargs, ["user_id", "amount"])

    gov.set_limit(call(42, 10), 1, 60)
    assert gov.acquire(call(42, 10)).allowed
    assert not gov.acquire(call(user_id=42, amount=1)).allowed
    assert gov.acquire(call(43, 10)).remaining == float("inf")
    with pytest.raises(ValueError, match="user_id"):
        call(amount=1)


def test_denial_counters_and_stats(gov: Governor) -> None:
    gov.set_limit("a", 2, 60)
    gov.set_limit("b", 1, 60)
    for _ in range(5):
        gov.acquire("a")
    gov.acquire("b")
    assert gov.denials("a") == 3
    assert gov.denials("b") == 0
    stats = gov.stats()
    assert stats["a"]["admitted"] == 2
    assert stats["a"]["denials"] == 3
    assert stats["a"]["limits"] == [
        {"name": "per_60s", "limit": 2, "per_seconds": 60.0, "capacity": 2}
    ]
    assert stats["b"] == {
        "limits": [{"name": "per_60s", "limit": 1, "per_seconds": 60.0, "capacity": 1}],
        "denials": 0,
        "admitted": 1,
    }


def test_scripts_survive_script_flush(gov: Governor) -> None:
    gov.set_limit("f", 3, 60)
    assert gov.acquire("f").allowed
    gov.client.script_flush()
    assert gov.acquire("f").allowed  # NOSCRIPT -> reloaded transparently


def test_limit_set_here_applies_in_another_process(gov: Governor, redis_url: str) -> None:
    code = textwrap.dedent(
        f"""
        import redis
        from sandbox_platform.coordination.governor import Governor
        gov = Governor(redis.Redis.from_url({redis_url!r}), prefix={gov.prefix!r})
        print(",".join(str(gov.acquire("shared").allowed) for _ in range(3)))
        print(",".join(f"{{l.limit}}/{{l.per_seconds:g}}" for l in gov.limits("shared")))
        """
    )

    def run_child() -> list[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    gov.set_limit("shared", 2, 86400)
    assert run_child() == ["True,True,False", "2/86400"]
    gov.set_limit("shared", 5, 86400)  # 5 - 2 taken = 3 left, seen by the child at once
    assert run_child() == ["True,True,True", "5/86400"]


def test_unreachable_redis_fails_closed_quickly() -> None:
    dead = Governor(redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1))
    start = time.monotonic()
    for call in (
        lambda: dead.acquire("x"),
        lambda: dead.set_limit("x", 1, 1),
        lambda: dead.check_limit("x"),
        lambda: dead.denials("x"),
        dead.stats,
    ):
        with pytest.raises(GovernorUnavailable, match="unreachable"):
            call()
    assert time.monotonic() - start < 5


# --- the bound, with many processes ---------------------------------------------------------


def _hammer(url: str, prefix: str, go: Event, seconds: float, out: Any) -> None:
    gov = Governor(redis.Redis.from_url(url), prefix=prefix)
    go.wait(30)
    admitted = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if gov.acquire("bucket").allowed:
            admitted += 1
    out.put(admitted)


def run_bound(
    gov: Governor,
    url: str,
    procs: list[mp.process.BaseProcess],
    *,
    workers: int,
    seconds: float,
    capacity: int,
    rate: int,
) -> tuple[int, int]:
    """Hammer one bucket; return (admitted, bound = capacity + rate * elapsed_redis)."""
    ctx = mp.get_context("fork")
    go, out = ctx.Event(), ctx.Queue()
    gov.set_limit("bucket", rate, 1, capacity=capacity)
    for _ in range(workers):
        proc = ctx.Process(target=_hammer, args=(url, gov.prefix, go, seconds, out))
        proc.start()
        procs.append(proc)
    t0 = redis_us(gov.client)  # the bucket is full (capacity) at t0 at most
    go.set()
    counts = [out.get(timeout=seconds + 30) for _ in range(workers)]
    t1 = redis_us(gov.client)  # every acquire happened before this
    for child in procs:
        child.join(10)
        assert child.exitcode == 0
    admitted = sum(counts)
    assert gov.stats()["bucket"]["admitted"] == admitted
    return admitted, capacity + (t1 - t0) * rate // 1_000_000


def test_bound_holds_to_the_unit_two_processes(
    gov: Governor, redis_url: str, processes: list[mp.process.BaseProcess]
) -> None:
    admitted, bound = run_bound(
        gov, redis_url, processes, workers=2, seconds=2, capacity=5, rate=200
    )
    assert admitted <= bound
    assert admitted >= 0.95 * bound


@pytest.mark.slow
def test_bound_holds_eight_processes_ten_seconds(
    gov: Governor, redis_url: str, processes: list[mp.process.BaseProcess]
) -> None:
    admitted, bound = run_bound(
        gov, redis_url, processes, workers=8, seconds=10, capacity=50, rate=20
    )
    assert admitted <= bound, f"over-admitted: {admitted} > {bound}"
    assert admitted >= 0.95 * bound, f"under-admitted: {admitted} < 95% of {bound}"


def test_limits_buckets_and_counters_written_before_0_2_are_used(gov: Governor) -> None:
    """0.1 kept the config only in the config hash, let the bucket state expire and counted in
    a stats hash. A decision copies the config into the state hash (and keeps the state from
    expiring: a bucket half used must not come back full), and the old counts still add up."""
    keys = gov.keys("old")
    gov.client.hset(keys.cfg, "per_86400s", "1 1 5 5 86400000000 5")  # 5 a day, as 0.1 wrote
    far = 10**16  # the state was written "later than now": no refill
    gov.client.hset(keys.state, "per_86400s", f"2 {far} 1 5")  # 2 tokens left
    gov.client.pexpire(keys.state, 60_000)
    gov.client.hset(keys.stats, mapping={"admitted": 3, "denied": 1})
    gov.client.sadd(f"{gov.prefix}:gov:resources", "old")

    assert [gov.acquire("old").allowed for _ in range(3)] == [True, True, False]
    assert gov.client.pttl(keys.state) == -1  # persistent now
    assert gov.client.hget(keys.state, " cfg per_86400s") == b"1 1 5 5 86400000000 5"
    assert gov.stats()["old"]["admitted"] == 5 and gov.stats()["old"]["denials"] == 2
    assert gov.denials("old") == 2

    gov.clear_limits("old")  # the limit goes, the counters stay
    assert gov.acquire("old").allowed
    assert gov.client.hmget(keys.state, " admitted", " denied") == [b"2", b"1"]
