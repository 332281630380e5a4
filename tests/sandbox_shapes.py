"""Tasks for the sandbox's own tests: an irreversible call made in every shape of code a task
can contain (threads, pools, executors, asyncio, forked and spawned children), a simulator
that raises, connections the egress guard watches, and a probe of which mode ran a job.

Registered on an app by :func:`register_shapes`; ``tests.shapes_app`` runs them in a worker.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import urllib.request
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import redis
import sqlalchemy as sa
from celery import Celery

from sandbox_platform import guarded_task, irreversible
from sandbox_platform.core.apps import active_settings
from sandbox_platform.guards.retry import RetryPolicy
from tests import warm_client
from tests.task_defs import real_charge

NO_RETRY = RetryPolicy(max_retries=0)


def _redis() -> redis.Redis:
    url = active_settings().redis_url
    assert url is not None
    return redis.Redis.from_url(url)


def _psycopg(url: str) -> str:
    return url.replace("postgresql:", "postgresql+psycopg:", 1)


def charge_in_child(sink: str, n: int) -> None:
    """A child process's body: one irreversible call, then exit at once (no cleanup)."""
    real_charge(sink, n)
    os._exit(0)


def charge_and_return(sink: str, n: int) -> int:
    real_charge(sink, n)
    return n


@irreversible("fx", simulate=lambda amount, rates: {"rate": rates["currency"]})
def convert(amount: int, rates: dict[str, float]) -> dict[str, Any]:
    return {"converted": amount}


def _in_thread(sink: str, n: int) -> int:
    thread = threading.Thread(target=real_charge, args=(sink, n))
    thread.start()
    thread.join()
    return n


def _in_pool(sink: str, n: int) -> int:
    with ThreadPoolExecutor(max_workers=2) as pool:
        return int(pool.submit(charge_and_return, sink, n).result())


def _in_executor(sink: str, n: int) -> int:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        return int(await loop.run_in_executor(None, charge_and_return, sink, n))

    return asyncio.run(main())


def _in_asyncio(sink: str, n: int) -> int:
    async def charge() -> int:
        await asyncio.sleep(0)
        return charge_and_return(sink, n)

    async def main() -> int:
        return await asyncio.create_task(charge())

    return asyncio.run(main())


def _in_child(method: str, sink: str, n: int) -> int:
    child = multiprocessing.get_context(method).Process(target=charge_in_child, args=(sink, n))
    child.start()
    child.join(60)
    return n


def _in_process_pool(sink: str, n: int) -> int:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        return int(pool.submit(charge_and_return, sink, n).result(timeout=60))


SHAPES = {
    "thread": _in_thread,
    "thread_pool": _in_pool,
    "run_in_executor": _in_executor,
    "asyncio": _in_asyncio,
    "fork": lambda sink, n: _in_child("fork", sink, n),
    "spawn": lambda sink, n: _in_child("spawn", sink, n),
    "process_pool": _in_process_pool,
}


def register_shapes(app: Celery) -> SimpleNamespace:
    @guarded_task(app, name="tests.shape", retry=NO_RETRY)
    def shape(kind: str, sink: str, n: int) -> int:
        return int(SHAPES[kind](sink, n))

    @guarded_task(app, name="tests.bad_simulator")
    def bad_simulator(amount: int) -> dict[str, Any]:
        return convert(amount, {"eur": 1.1})

    @guarded_task(app, name="tests.where")
    def where(tag: str) -> str:
        _redis().rpush(f"ran:{active_settings().mode.value}", tag)
        return tag

    @guarded_task(app, name="tests.http_get", retry=NO_RETRY)
    def http_get(url: str) -> int:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (a test server)
            return int(response.status)

    @guarded_task(app, name="tests.warm_get", retry=NO_RETRY)
    def warm_get(url: str) -> int:
        """A GET on the keep-alive client the worker warmed at import."""
        return int(warm_client.client.get(url).status_code)

    @guarded_task(app, name="tests.platform_services")
    def platform_services() -> bool:
        settings = active_settings()
        assert redis.Redis.from_url(str(settings.redis_url)).ping()  # a new Redis connection
        engine = sa.create_engine(
            settings.sandbox_database_url.replace("postgresql:", "postgresql+psycopg:")
        )
        try:
            with engine.connect() as connection:  # a first sandbox-database connection
                return bool(connection.execute(sa.text("SELECT 1")).scalar() == 1)
        finally:
            engine.dispose()

    @guarded_task(app, name="tests.connect_db", retry=NO_RETRY)
    def connect_db(url: str) -> int:
        engine = sa.create_engine(_psycopg(url))
        try:
            with engine.connect() as connection:
                return int(connection.execute(sa.text("SELECT 1")).scalar() or 0)
        finally:
            engine.dispose()

    return SimpleNamespace(
        shape=shape,
        bad_simulator=bad_simulator,
        where=where,
        http_get=http_get,
        warm_get=warm_get,
        platform_services=platform_services,
        connect_db=connect_db,
    )
