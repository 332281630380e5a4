"""A RabbitMQ worker drains its queue without stalls between jobs.

The signature of the stall this guards against: a solo worker (prefetch 1, late acks) sat
idle with one delivery unacknowledged while jobs waited, until another frame reached its
connection (about 10 s later). Here one worker runs 100 quick guarded jobs, with and without
governor re-queues; a gap of 5 s or more between two jobs' starts fails the test at once."""

from __future__ import annotations

import itertools
import time

import pytest
import redis

from sandbox_platform.coordination.governor import Governor
from tests.brokers import ON_BOTH_BROKERS

pytestmark = [pytest.mark.slow]
WORKER_APP = "tests.worker_app"
JOBS = 100
#: no job starts for this long while jobs wait: the stall (a healthy worker takes ~10 ms a job)
STALL = 5.0


def _starts(client: redis.Redis, key: str) -> list[tuple[int, float]]:
    return [
        (int(n), float(t)) for n, t in (item.decode().split() for item in client.lrange(key, 0, -1))
    ]


def _drain(client: redis.Redis, key: str, jobs: int, *, first_within: float = 30.0) -> None:
    """Wait until ``jobs`` jobs ran; fail as soon as none started for ``STALL`` seconds."""
    deadline = time.monotonic() + first_within
    seen, since = 0, time.monotonic()
    while seen < jobs:
        count = int(client.llen(key))
        now = time.monotonic()
        if count != seen:
            seen, since = count, now
        elif seen and now - since >= STALL:
            pytest.fail(f"the worker stalled: no job started for {STALL:.0f} s after {seen}")
        elif not seen and now > deadline:
            pytest.fail(f"no job started within {first_within:.0f} s")
        time.sleep(0.05)


def _check_gaps(client: redis.Redis, key: str, jobs: int) -> None:
    starts = sorted(t for _, t in _starts(client, key))
    assert sorted(n for n, _ in _starts(client, key)) == list(range(jobs))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert max(gaps) < STALL, f"largest gap between two jobs' starts: {max(gaps):.1f} s"


@ON_BOTH_BROKERS
def test_one_solo_worker_drains_quick_jobs_without_stalls(
    guarded, worker_factory, platform_app, redis_client
) -> None:
    worker_factory(platform_app, WORKER_APP)
    for i in range(JOBS):
        guarded.stamp.delay("stamps", i)
    _drain(redis_client, "stamps", JOBS)
    _check_gaps(redis_client, "stamps", JOBS)


@ON_BOTH_BROKERS
def test_one_solo_worker_drains_governor_requeues_without_stalls(
    guarded, worker_factory, platform_app, redis_client
) -> None:
    # 10 per 0.25 s (40 a second, bursts of 10): jobs beyond a burst are denied and re-queued
    # with a countdown under 0.25 s, so re-queues and ETA deliveries go through the worker
    Governor(redis_client, "sp").set_limit("test-bucket", 10, 0.25)
    worker_factory(platform_app, WORKER_APP)
    for i in range(JOBS):
        guarded.limited_stamp.delay("stamps", i)
    _drain(redis_client, "stamps", JOBS)
    _check_gaps(redis_client, "stamps", JOBS)
    assert Governor(redis_client, "sp").denials("test-bucket") > 0  # re-queues happened
