"""The Dramatiq peer for bench_drain.py: ``dramatiq bench.drain_dramatiq -p 2 -t 4`` (the
I/O-bound phase: ``-p 2 -t 8``, Dramatiq's default threads).

Dramatiq's Redis broker with its default middleware, one actor whose body is the same single
``INCR`` as every other variant (:func:`bench.drain_common.incr`), retries off (no job fails);
and the I/O-bound phase's actor (100 ms wait, then the INCR).
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.drain_common import incr, redis_url, wait_then_incr

__all__ = ["QUEUE_KEY", "broker", "drain_dramatiq", "drain_io_dramatiq"]

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
