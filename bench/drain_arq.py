"""The arq peer for bench_drain.py's async phase: ``python -m arq bench.drain_arq.WorkerSettings``.

arq's default worker, as its CLI starts it, with ``max_jobs=50`` (the platform's jobs in flight
per process) and nothing else set: its default pickle serializer, ``poll_delay`` 0.5 s,
``keep_result`` 3600 s, ``max_tries`` 5, ``job_timeout`` 300 s, logging of every job at INFO.
One function whose body is the async phase's (:func:`bench.drain_common.wait_then_incr_async`:
``await asyncio.sleep(0.1)``, then one INCR on a ``redis.asyncio`` client of the running loop,
as in the platform's and Dramatiq's async jobs). Jobs wait in the sorted set
``arq.constants.default_queue_name`` (``arq:queue``), their data in ``arq:job:<id>``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any

from arq.connections import RedisSettings, create_pool
from arq.constants import default_queue_name
from arq.worker import Worker

from bench.drain_common import redis_url, wait_then_incr_async

__all__ = [
    "MAX_JOBS",
    "QUEUE_KEY",
    "FastPollSettings",
    "WorkerSettings",
    "drain_async_arq",
    "enqueue",
    "settings",
]

#: jobs one arq worker process runs at once (the platform's ``--concurrency 50``)
MAX_JOBS = 50
QUEUE_KEY = default_queue_name


async def drain_async_arq(ctx: dict[str, Any], i: int) -> None:
    await wait_then_incr_async()


class WorkerSettings:
    functions = [drain_async_arq]
    redis_settings = RedisSettings.from_dsn(redis_url())
    max_jobs = MAX_JOBS


class FastPollSettings:
    """arq with one setting changed, shown beside its default: ``poll_delay`` 10 ms instead of
    0.5 s (arq reads a settings class's own ``__dict__``, so every attribute is repeated)."""

    functions = [drain_async_arq]
    redis_settings = RedisSettings.from_dsn(redis_url())
    max_jobs = MAX_JOBS
    poll_delay = 0.01


def settings() -> dict[str, Any]:
    """What the worker runs with: WorkerSettings over ``arq.worker.Worker``'s defaults."""
    parameters = inspect.signature(Worker).parameters
    defaults = {n: p.default for n, p in parameters.items() if p.default is not p.empty}
    own = {n: v for n, v in vars(WorkerSettings).items() if n in parameters}  # as arq reads it
    chosen = {**defaults, **own}
    return {
        "max_jobs": chosen["max_jobs"],
        "poll_delay": chosen["poll_delay"],
        "keep_result": chosen["keep_result"],
        "keep_result_forever": chosen["keep_result_forever"],
        "max_tries": chosen["max_tries"],
        "serializer": "pickle (default)" if chosen["job_serializer"] is None else "custom",
        "set": sorted(own),
    }


async def _enqueue(n: int, start: int) -> float:
    pool = await create_pool(WorkerSettings.redis_settings)
    try:
        started = time.perf_counter()
        for i in range(start, start + n):
            await pool.enqueue_job(drain_async_arq.__name__, i)
        return time.perf_counter() - started
    finally:
        await pool.aclose()


def enqueue(n: int, start: int = 0) -> float:
    """Enqueue n jobs with ``ArqRedis.enqueue_job``, one producer; the seconds of the loop."""
    return asyncio.run(_enqueue(n, start))
