"""Tasks of tests/integration/test_redis_cluster.py: the coordination Redis is a
Redis Cluster, the broker a single-node Redis. The tasks' effects go to lists in the broker's
Redis (a platform service, so the sandbox egress guard lets task code reach it).

The worker runs ``tests.cluster_app``; the test process declares the same tasks on its app.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import redis
from celery import Celery

from sandbox_platform.core.apps import active_settings
from sandbox_platform.tasks import guarded_task

#: resources of cluster.limited (two: the admission takes from each in its own step)
RESOURCES = ("cl-api", "cl-db")


def _sink() -> redis.Redis:
    url = active_settings().broker_url
    assert url is not None
    return redis.Redis.from_url(url)


def register(app: Celery) -> SimpleNamespace:
    """Declare the cluster test tasks on ``app``."""

    @guarded_task(app, name="cluster.limited", governor=list(RESOURCES))
    def limited(i: int) -> int:
        _sink().rpush("cluster-limited", f"{i} {time.time()}")
        return i

    @guarded_task(app, name="cluster.once", idempotency_key="{order_id}")
    def once(order_id: str) -> str:
        _sink().rpush("cluster-once", order_id)
        return order_id

    return SimpleNamespace(limited=limited, once=once)


__all__ = ["RESOURCES", "register"]
