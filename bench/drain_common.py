"""What every drain-bench worker app shares: the environment it is built from and the task body.

The body of every variant is the same single ``INCR`` of one counter key, on a plain redis-py
client made once per process (after a fork too), so the variants differ only in what Celery
and the platform do around it. The async phase's body (:func:`wait_then_incr_async`) awaits
the same 100 ms as the I/O phase's, then the same ``INCR`` on a ``redis.asyncio`` client made
once per event loop.
"""

from __future__ import annotations

import asyncio
import os
import time
import weakref

import redis
import redis.asyncio

__all__ = [
    "COUNTER_KEY",
    "ENV_DB",
    "ENV_PREFIX",
    "ENV_REDIS",
    "IO_SECONDS",
    "LATENCY_KEY",
    "incr",
    "record_latency",
    "redis_url",
    "wait_then_incr",
    "wait_then_incr_async",
]

ENV_REDIS = "SP_DRAIN_REDIS_URL"
ENV_DB = "SP_DRAIN_DATABASE_URL"
ENV_PREFIX = "SP_DRAIN_KEY_PREFIX"
COUNTER_KEY = "drainbench:count"
LATENCY_KEY = "drainbench:latency"

_client: redis.Redis | None = None
_client_pid = 0


def redis_url() -> str:
    return os.environ.get(ENV_REDIS, "redis://127.0.0.1:6379/7")


def _redis() -> redis.Redis:
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        _client = redis.Redis.from_url(redis_url())
        _client_pid = os.getpid()
    return _client


def incr() -> None:
    """The task body of every variant: one INCR of the counter."""
    _redis().incr(COUNTER_KEY)


#: what the I/O-bound body waits (a call to a partner API, a mail server, a payment provider)
IO_SECONDS = 0.1


def wait_then_incr() -> None:
    """The I/O-bound phase's body: wait 100 ms as on the network, then one INCR."""
    time.sleep(IO_SECONDS)
    incr()


#: one ``redis.asyncio`` client per event loop, made on first use inside the running loop (an
#: asyncio client belongs to the loop it first ran on: never shared across loops); weak keys,
#: so a closed loop's client goes with it
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis] = (
    weakref.WeakKeyDictionary()
)


def _async_redis() -> redis.asyncio.Redis:
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = _async_clients[loop] = redis.asyncio.Redis.from_url(redis_url())
    return client


async def wait_then_incr_async() -> None:
    """The async phase's body: ``await asyncio.sleep(0.1)`` as on the network, then one INCR
    on the running loop's ``redis.asyncio`` client."""
    await asyncio.sleep(IO_SECONDS)
    await _async_redis().incr(COUNTER_KEY)


def record_latency(sent_at: float) -> None:
    """The latency task's body: how long after ``sent_at`` (``time.time()``) it started."""
    _redis().rpush(LATENCY_KEY, time.time() - sent_at)
