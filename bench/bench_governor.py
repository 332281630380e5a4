"""Benchmark the governor: decisions per second and how close it admits to its bound.

Run::

    PYTHONPATH=. .venv/bin/python bench/bench_governor.py [--redis-url redis://127.0.0.1:6379/11]

It measures, in one run (well under a minute):

* decisions/s of ``Governor.acquire`` on one connection, against a raw ``EVALSHA`` of a
  minimal one-limit token bucket on one connection (the floor a Redis token bucket costs from
  Python), and with 8 processes together;
* admitted / (capacity + rate * T) with 8 processes hammering one bucket (1.0 is exact;
  above 1.0 is over-admission), T measured with Redis ``TIME``;
* the same two numbers for dramatiq's ``BucketRateLimiter`` when dramatiq is importable
  (its bound is ``limit`` per started window).

Keys use a fresh prefix and are deleted at the end; nothing else in the database is touched.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sandbox_platform.coordination.governor import Governor

PROCESSES = 8
SPEED_SECONDS = 3.0
BOUND_SECONDS = 5.0
CAPACITY = 50
RATE = 100  # tokens per second


def redis_us(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1_000_000 + int(micros)


# --- our governor -----------------------------------------------------------------------------


def governor_loop(url: str, prefix: str, resource: str, seconds: float) -> tuple[int, int]:
    """Acquire in a tight loop; return (decisions, admitted)."""
    gov = Governor(redis.Redis.from_url(url), prefix=prefix)
    decisions = admitted = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        admitted += gov.acquire(resource).allowed
        decisions += 1
    return decisions, admitted


# --- the floor: a raw EVALSHA token bucket ----------------------------------------------------

#: one limit, refilled from Redis TIME; no config lookup, no stats, no multi-limit plan
RAW_BUCKET = """
local now = redis.call('TIME')
local t = tonumber(now[1]) * 1000000 + tonumber(now[2])
local rate, cap, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local s = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(s[1]) or cap
local ts = tonumber(s[2]) or t
tokens = math.min(cap, tokens + (t - ts) * rate / 1000000)
if tokens >= cost then
  redis.call('HSET', KEYS[1], 'tokens', tokens - cost, 'ts', t)
  return {1, tostring(tokens - cost)}
end
return {0, tostring(tokens)}
"""


def decision_rates(url: str, prefix: str) -> tuple[float, float]:
    """(governor, raw EVALSHA) decisions/s on one connection each, in blocks of 200
    decisions alternating between the two for SPEED_SECONDS each (drift hits both alike)."""
    client = redis.Redis.from_url(url)
    gov = Governor(redis.Redis.from_url(url), prefix=prefix)
    gov.set_limit("speed", 1_000_000, 1)  # never denies: the pure cost of a decision
    sha = client.script_load(RAW_BUCKET)
    raw_key = f"{prefix}:raw:speed"
    spent = {"ours": 0.0, "raw": 0.0}
    counted = 0
    while min(spent.values()) < SPEED_SECONDS:
        started = time.perf_counter()
        for _ in range(200):
            gov.acquire("speed")
        spent["ours"] += time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(200):
            client.evalsha(sha, 1, raw_key, 1_000_000, 1_000_000, 1)
        spent["raw"] += time.perf_counter() - started
        counted += 200
    return counted / spent["ours"], counted / spent["raw"]


def over_admission(url: str, prefix: str) -> dict[str, Any]:
    """PROCESSES processes on one bucket: admitted vs the bound cap + rate x T."""
    Governor(redis.Redis.from_url(url), prefix=prefix).set_limit(
        "bound", RATE, 1, capacity=CAPACITY
    )
    decisions, admitted, t0, t1 = in_processes(governor_loop, url, prefix, "bound", BOUND_SECONDS)
    bound = CAPACITY + (t1 - t0) * RATE // 1_000_000
    return {
        "processes": PROCESSES,
        "admitted": admitted,
        "bound": bound,
        "over": max(0, admitted - bound),
        "seconds": (t1 - t0) / 1e6,
        "decisions": decisions,
    }


# --- dramatiq's BucketRateLimiter --------------------------------------------------------------


def dramatiq_loop(url: str, prefix: str, resource: str, seconds: float) -> tuple[int, int]:
    from dramatiq.rate_limits import BucketRateLimiter  # type: ignore[import-not-found,unused-ignore]
    from dramatiq.rate_limits.backends import (  # type: ignore[import-not-found,unused-ignore]
        RedisBackend,
    )

    backend = RedisBackend(client=redis.Redis.from_url(url))
    limiter = BucketRateLimiter(backend, f"{prefix}:{resource}", limit=RATE, bucket=1000)
    decisions = admitted = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with limiter.acquire(raise_on_failure=False) as acquired:
            admitted += bool(acquired)
        decisions += 1
    return decisions, admitted


# --- running loops in processes -------------------------------------------------------------


Loop = Callable[[str, str, str, float], tuple[int, int]]


def _child(loop: Loop, args: tuple[str, str, str, float], go: Any, out: Any) -> None:
    go.wait(30)
    out.put(loop(*args))


def in_processes(
    loop: Loop, url: str, prefix: str, resource: str, seconds: float
) -> tuple[int, int, int, int]:
    """Run ``loop`` in PROCESSES processes at once; (decisions, admitted, t0_us, t1_us)."""
    ctx = mp.get_context("fork")
    go, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_child, args=(loop, (url, prefix, resource, seconds), go, out))
        for _ in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    client = redis.Redis.from_url(url)
    try:
        t0 = redis_us(client)
        go.set()
        results = [out.get(timeout=seconds + 30) for _ in procs]
        t1 = redis_us(client)
    finally:
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
    return sum(r[0] for r in results), sum(r[1] for r in results), t0, t1


def bench_ours(url: str, prefix: str) -> None:
    ours, raw = decision_rates(url, prefix)  # limit 10**6/s: pure decision cost, never denied
    print(f"governor  1 connection : {ours:>9,.0f} decisions/s")
    print(f"raw EVALSHA bucket     : {raw:>9,.0f} decisions/s  (governor / raw {ours / raw:.2f})")
    decisions, _, t0, t1 = in_processes(governor_loop, url, prefix, "speed", SPEED_SECONDS)
    elapsed = (t1 - t0) / 1e6
    print(f"governor  {PROCESSES} processes  : {decisions / elapsed:>9,.0f} decisions/s")
    b = over_admission(url, prefix)
    print(
        f"governor  bound        : admitted {b['admitted']} / bound {b['bound']} "
        f"(cap {CAPACITY} + {RATE}/s x {b['seconds']:.3f}s) = {b['admitted'] / b['bound']:.4f}"
        f"; over-admitted {b['over']}; {b['decisions'] / b['seconds']:,.0f} decisions/s"
    )


def bench_dramatiq(url: str, prefix: str) -> None:
    try:
        import dramatiq  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        print("dramatiq  not installed: no side-by-side comparison (pip install dramatiq)")
        return
    dprefix = f"{prefix}:dramatiq"
    # a window limit of RATE per second with RATE far below what we can do: measure speed on
    # a key whose limit is never reached, then the bound on a contended one
    decisions, _ = dramatiq_loop_unlimited(url, dprefix)
    print(f"dramatiq  1 connection : {decisions / SPEED_SECONDS:>9,.0f} decisions/s")
    decisions, admitted, t0, t1 = in_processes(dramatiq_loop, url, dprefix, "bound", BOUND_SECONDS)
    elapsed = (t1 - t0) / 1e6
    # every one-second window (of the wall clock) that the run touched may admit RATE
    bound_windows = RATE * (t1 // 1_000_000 - t0 // 1_000_000 + 1)
    bound_bucket = CAPACITY + (t1 - t0) * RATE // 1_000_000
    print(
        f"dramatiq  bound        : admitted {admitted} in {elapsed:.3f}s; vs its own window bound "
        f"{bound_windows} = {admitted / bound_windows:.4f}; vs cap+rate*T {bound_bucket} = "
        f"{admitted / bound_bucket:.4f}; {decisions / elapsed:,.0f} decisions/s"
    )


def dramatiq_loop_unlimited(url: str, prefix: str) -> tuple[int, int]:
    from dramatiq.rate_limits import BucketRateLimiter  # type: ignore[import-not-found,unused-ignore]
    from dramatiq.rate_limits.backends import (  # type: ignore[import-not-found,unused-ignore]
        RedisBackend,
    )

    backend = RedisBackend(client=redis.Redis.from_url(url))
    limiter = BucketRateLimiter(backend, f"{prefix}:speed", limit=10**9, bucket=1000)
    decisions = 0
    end = time.monotonic() + SPEED_SECONDS
    while time.monotonic() < end:
        with limiter.acquire(raise_on_failure=False):
            decisions += 1
    return decisions, decisions


def cleanup(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--redis-url", default=os.environ.get("SP_BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
    )
    url = parser.parse_args().redis_url
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    print(f"Redis {url}, prefix {prefix}, hiredis: {redis.utils.HIREDIS_AVAILABLE}")
    try:
        bench_ours(url, prefix)
        bench_dramatiq(url, prefix)
    finally:
        cleanup(url, prefix)
    print(f"total {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
