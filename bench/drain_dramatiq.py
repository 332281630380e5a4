"""The Dramatiq peer for bench_drain.py: ``dramatiq bench.drain_dramatiq -p 2 -t 4``.

Dramatiq's Redis broker with its default middleware, one actor whose body is the same single
``INCR`` as every other variant (:func:`bench.drain_common.incr`), retries off (no job fails).
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.drain_common import incr, redis_url

__all__ = ["QUEUE_KEY", "broker", "drain_dramatiq"]

broker = RedisBroker(url=redis_url())
dramatiq.set_broker(broker)

#: the list of waiting message ids of the actor's queue (the messages are in "<key>.msgs")
QUEUE_KEY = "dramatiq:default"


@dramatiq.actor(queue_name="default", max_retries=0)
def drain_dramatiq(i: int) -> None:
    incr()
