"""Tasks of the broker-isolation tests (``celery -A tests.broker_app worker``): an idempotent
task on a queue declared with an expiry, and one whose job ``n == break_at`` turns its own
idempotency record into a string after its claim."""

from __future__ import annotations

from types import SimpleNamespace

import redis
from celery import Celery
from kombu import Queue

from sandbox_platform import guarded_task
from sandbox_platform.core.apps import active_settings
from sandbox_platform.core.jobscope import current_job

#: a queue that expires when unused for 10 minutes (kombu's x-expires)
EXPIRING = Queue("expiring", expires=600)
#: what a job writes over its own record
FOREIGN_VALUE = "written by someone else"


def _redis() -> redis.Redis:
    url = active_settings().redis_url
    assert url is not None
    return redis.Redis.from_url(url)


def register_broker_tasks(app: Celery) -> SimpleNamespace:
    app.amqp.queues.select_add(EXPIRING)  # consumed; qualified with the mode (broker/queues.py)

    @guarded_task(app, name="broker.expiring_once", idempotency_key="{k}", queue="expiring")
    def expiring_once(k: str, runs_key: str) -> str:
        _redis().rpush(runs_key, k)
        return k

    @guarded_task(app, name="broker.breaks_own_record", idempotency_key="{n}-{runs_key}")
    def breaks_own_record(n: int, runs_key: str, break_at: int) -> int:
        client = _redis()
        if n == break_at:
            job = current_job()
            assert job is not None and job.idempotency_key is not None
            record = f"{job.services.prefix}:idem:r:{{{job.idempotency_key}}}"
            client.delete(record)
            client.set(record, FOREIGN_VALUE)
        client.rpush(runs_key, n)
        return n

    return SimpleNamespace(expiring_once=expiring_once, breaks_own_record=breaks_own_record)
