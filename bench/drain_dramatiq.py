"""The Dramatiq peer for bench_drain.py: ``dramatiq bench.drain_dramatiq -p 2 -t 4`` (the
I/O-bound phase: ``-p 2 -t 8``, Dramatiq's default threads).

Dramatiq's Redis broker with its default middleware, one actor whose body is the same single
``INCR`` as every other variant (:func:`bench.drain_common.incr`), retries off (no job fails);
and the I/O-bound phase's actor (100 ms wait, then the INCR).

The async phase's actor is an ``async def`` (``await asyncio.sleep(0.1)``, then the INCR on a
``redis.asyncio`` client) on ``async_broker``: the same Redis broker and default middleware
plus Dramatiq's ``AsyncIO`` middleware (one event loop thread per process; each worker thread
waits for its job's coroutine there, so jobs in flight = processes x threads):
``dramatiq bench.drain_dramatiq:async_broker -p 2 -t 8``. A broker of its own, so the other
variants run Dramatiq's default middleware exactly as before.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AsyncIO

from bench.drain_common import incr, redis_url, wait_then_incr, wait_then_incr_async

__all__ = [
    "QUEUE_KEY",
    "async_broker",
    "broker",
    "drain_async_dramatiq",
    "drain_dramatiq",
    "drain_io_dramatiq",
]

broker = RedisBroker(url=redis_url())
dramatiq.set_broker(broker)

#: the list of waiting message ids of the actor's queue (the messages are in "<key>.msgs")
QUEUE_KEY = "dramatiq:default"


@dramatiq.actor(queue_name="default", max_retries=0)
def drain_dramatiq(i: int) -> None:
    incr()


@dramatiq.actor(queue_name="default", max_retries=0)
def drain_io_dramatiq(i: int) -> None:
    wait_then_incr()


async_broker = RedisBroker(url=redis_url())
async_broker.add_middleware(AsyncIO())


@dramatiq.actor(queue_name="default", max_retries=0, broker=async_broker)
async def drain_async_dramatiq(i: int) -> None:
    await wait_then_incr_async()
