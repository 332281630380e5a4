"""Jobs in flight in a test worker, counted in Redis (tests/pools.py).

Installed by the test worker apps at import; it does nothing unless the test started the
worker with ``SP_TEST_INFLIGHT_KEY`` (threads runs, tests/conftest.py ``worker_factory``).
Each job entering counts itself in ``<key>:now`` and raises ``<key>:high`` to the count;
then it waits (up to ``RENDEZVOUS_SECONDS``) for the floor to be in flight, so a test that
enqueues a few jobs at once really runs them interleaved on a busy machine.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery.signals import task_postrun, task_prerun

from tests.pools import IN_FLIGHT_FLOOR

__all__ = ["high_water", "install"]

RENDEZVOUS_SECONDS = 0.3
_RAISE_HIGH = """
local now = redis.call('INCR', KEYS[1])
if now > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], now) end
return now
"""


class _Counter:
    def __init__(self, url: str, key: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.now, self.high = f"{key}:now", f"{key}:high"
        self.raise_high = self.client.register_script(_RAISE_HIGH)

    def enter(self, **_: Any) -> None:
        count = int(self.raise_high(keys=[self.now, self.high]))
        deadline = time.monotonic() + RENDEZVOUS_SECONDS
        while count < IN_FLIGHT_FLOOR and time.monotonic() < deadline:
            time.sleep(0.01)
            count = int(self.client.get(self.now) or 0)

    def leave(self, **_: Any) -> None:
        self.client.decr(self.now)


def install() -> None:
    """Count this worker's jobs in flight when the test asked for it."""
    key = os.environ.get("SP_TEST_INFLIGHT_KEY")
    if not key:
        return
    counter = _Counter(os.environ["SP_TEST_INFLIGHT_URL"], key)
    task_prerun.connect(counter.enter, weak=False)
    task_postrun.connect(counter.leave, weak=False)


def high_water(client: redis.Redis, key: str) -> int:
    """The most jobs that were in flight at once under ``key``."""
    return int(client.get(f"{key}:high") or 0)
