"""``async def`` guarded tasks for tests/integration/test_async_jobs.py and
tests/integration/test_async_two_apps.py (registered on ``tests.worker_app`` and
``tests.two_apps``). Their bodies run on the worker's job loop (one asyncio loop per process).

What they do goes to sinks the tests read: a file (one line per real irreversible call), Redis
lists and counters (through one async Redis client the module keeps for reuse, as a task module
would), and the platform's own rows (run records, dry-run events, dead letters).

A batch of jobs meets at a barrier (:func:`in_batch`): a body waits until ``want`` bodies of
its batch are inside theirs (or :data:`BARRIER_SECONDS` passed: the body is then listed in
``<barrier>:missed``), and the most bodies inside theirs at once is kept in ``<barrier>:high``.
A runtime that ran bodies one after another on the loop leaves the batch's bodies missed.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import redis.asyncio as aioredis
import structlog
from celery import Celery

from sandbox_platform import Jitter, RetryPolicy, guarded_task, irreversible
from sandbox_platform.core.apps import active_settings
from sandbox_platform.core.context import (
    CORRELATION_HEADER,
    current_correlation_id,
    request_header,
)
from sandbox_platform.core.jobscope import current_job

__all__ = [
    "BARRIER_SECONDS",
    "HANG_LIMIT",
    "IDEM_LEASE",
    "in_batch",
    "pay",
    "refund",
    "register_async_tasks",
    "shared_redis",
]

#: the longest a body waits at its batch's barrier
BARRIER_SECONDS = 20.0
#: the time limit of ``async.hang`` (seconds)
HANG_LIMIT = 2
#: the idempotency lease of ``async.idem``: its in-flight duplicates come back after it
IDEM_LEASE = 6
NO_RETRY = RetryPolicy(max_retries=0)
FAST_RETRY = RetryPolicy(max_retries=2, base=0.05, cap=0.2, jitter=Jitter.NONE)

#: set by every interleaved async body; one that finds it set sees another job's context
LEFT_BEHIND: ContextVar[int | None] = ContextVar("async_left_behind", default=None)

_ENTER = """
local now = redis.call('INCR', KEYS[1])
if now > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], now) end
return now
"""

_clients: dict[tuple[int, str], aioredis.Redis] = {}


def shared_redis() -> aioredis.Redis:
    """The module's async Redis client, kept for reuse by every job of the process: one per
    event loop (the job loop of the worker) and Redis URL."""
    url = active_settings().redis_url
    assert url is not None
    key = (id(asyncio.get_running_loop()), url)
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = aioredis.Redis.from_url(url)
    return client


def _task_id() -> str:
    job = current_job()
    return job.task_id if job is not None else "?"


@asynccontextmanager
async def in_batch(barrier: str, want: int) -> AsyncIterator[None]:
    """Count this body in ``barrier``'s batch and wait until ``want`` bodies of the batch are
    in theirs; keep the batch's high-water of bodies in flight. ``barrier=""``: nothing."""
    if not barrier:
        yield
        return
    client = shared_redis()
    await client.eval(_ENTER, 2, f"{barrier}:now", f"{barrier}:high")
    try:
        entered = int(await client.incr(f"{barrier}:entered"))
        deadline = time.monotonic() + BARRIER_SECONDS
        while entered < want and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            entered = int(await client.get(f"{barrier}:entered") or 0)
        if entered < want:
            await client.rpush(f"{barrier}:missed", _task_id())
        yield
    finally:
        await client.decr(f"{barrier}:now")


def _append(sink: str, line: str) -> None:
    with Path(sink).open("a") as handle:
        handle.write(line + "\n")


@irreversible("async_payment", simulate=lambda sink, n: {"simulated_payment": n})
async def pay(sink: str, n: int) -> dict[str, Any]:
    """An irreversible async call with a sync simulator; a real call is a line in ``sink``."""
    await asyncio.sleep(0)
    _append(sink, f"pay {n}")
    return {"paid": n}


async def _simulate_refund(sink: str, n: int) -> dict[str, Any]:
    await asyncio.sleep(0.001)
    return {"simulated_refund": n}


@irreversible("async_refund", simulate=_simulate_refund)
async def refund(sink: str, n: int) -> dict[str, Any]:
    """An irreversible async call with an async simulator."""
    await asyncio.sleep(0)
    _append(sink, f"refund {n}")
    return {"refunded": n}


def register_async_tasks(app: Celery) -> SimpleNamespace:
    """Declare the async test tasks on ``app``; return them by name."""

    @guarded_task(app, name="async.charge", retry=NO_RETRY)
    async def charge(barrier: str, want: int, sink: str, n: int) -> dict[str, Any]:
        async with in_batch(barrier, want):
            paid = await pay(sink, n)
            refunded = await refund(sink, n)
        return {"pay": paid, "refund": refunded, "task_id": _task_id()}

    @guarded_task(app, name="async.interleave", bind=True)
    async def interleave(self: Any, n: int, pause: float, sink: str, seen_key: str) -> int:
        """One of many async bodies in flight on the loop: reports what it found of other
        jobs' context, makes an irreversible call, waits, and reports its own ids."""
        before = {
            "task_id": _task_id(),
            "correlation_id": current_correlation_id(),
            "request_id": self.request.id,
        }
        found_var = LEFT_BEHIND.get()
        found_job_n = structlog.contextvars.get_contextvars().get("job_n")
        LEFT_BEHIND.set(n)
        structlog.contextvars.bind_contextvars(job_n=n)
        structlog.get_logger("tests.async_interleave").info("interleaved async job", n=n)
        await pay(sink, n)
        await asyncio.sleep(pause)
        report = {
            "n": n,
            "task_id": _task_id(),
            "request_id": self.request.id,
            "correlation_id": current_correlation_id(),
            "header_correlation_id": request_header(self.request, CORRELATION_HEADER),
            "before": before,
            "found_var": found_var,
            "found_job_n": found_job_n,
            "thread": threading.get_ident(),
        }
        await shared_redis().rpush(seen_key, json.dumps(report))
        return n

    @guarded_task(
        app,
        name="async.idem",
        idempotency_key="{key}",
        dedupe=False,  # every duplicate is published: the worker side dedupes
        idempotency_lease=IDEM_LEASE,
    )
    async def idem(barrier: str, want: int, key: str, counter: str) -> dict[str, Any]:
        async with in_batch(barrier, want):
            await shared_redis().incr(f"{counter}:{key}")
            await asyncio.sleep(0.05)
        job = current_job()
        assert job is not None
        return {"key": key, "task_id": job.task_id, "fencing_token": job.fencing_token}

    @guarded_task(app, name="async.governed", governor=["test-bucket"])
    async def governed(barrier: str, want: int, key: str, i: int) -> int:
        await shared_redis().rpush(key, json.dumps([i, time.time()]))
        async with in_batch(barrier, want):
            await asyncio.sleep(0.05)
        return i

    @guarded_task(app, name="async.fails", bind=True, retry=FAST_RETRY)
    async def fails(self: Any, barrier: str, want: int, key: str) -> None:
        """Fails every attempt (a dead letter after its retries); reports each attempt's
        request and job scope after an await."""
        first = not self.request.retries
        async with in_batch(barrier if first else "", want):
            await asyncio.sleep(random.uniform(0.0, 0.02))
            job = current_job()
            report = {
                "request_id": self.request.id,
                "task_id": job.task_id if job else None,
                "retries": self.request.retries,
                "attempt": job.attempt if job else None,
                "correlation_id": current_correlation_id(),
                "header_correlation_id": request_header(self.request, CORRELATION_HEADER),
            }
            await shared_redis().rpush(key, json.dumps(report))
        raise RuntimeError(f"async failure of {self.request.id}")

    @guarded_task(app, name="async.hang", time_limit=HANG_LIMIT, retry=NO_RETRY)
    async def hang(key: str) -> None:
        client = shared_redis()
        await client.rpush(key, "started")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await client.rpush(key, "cancelled")
            raise
        await client.rpush(key, "woke up")  # never: it is cancelled at its limit

    @guarded_task(app, name="async.outlast", retry=NO_RETRY)
    async def outlast(barrier: str, want: int, marker_key: str, key: str) -> bool:
        """In flight beside a hung job: waits (20 s at most) until the hung body was
        cancelled, then finishes and reports whether it saw that."""
        client = shared_redis()
        async with in_batch(barrier, want):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if b"cancelled" in await client.lrange(marker_key, 0, -1):
                    break
                await asyncio.sleep(0.05)
            saw = b"cancelled" in await client.lrange(marker_key, 0, -1)
        await client.rpush(key, json.dumps({"task_id": _task_id(), "saw_cancel": saw}))
        return saw

    @guarded_task(app, name="async.connect", retry=NO_RETRY)
    async def connect(barrier: str, want: int, port: int) -> str:
        """Opens a TCP connection with asyncio to a loopback port nobody allowed."""
        async with in_batch(barrier, want):
            await asyncio.sleep(0)
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"leaked\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        return "connected"

    @guarded_task(app, name="async.child", bind=True)
    async def child(self: Any, key: str, how: str) -> None:
        report = {
            "how": how,
            "id": self.request.id,
            "parent_id": self.request.parent_id,
            "root_id": self.request.root_id,
            "correlation_id": current_correlation_id(),
        }
        await shared_redis().rpush(key, json.dumps(report))

    @guarded_task(app, name="async.parent", bind=True)
    async def parent(self: Any, key: str) -> str:
        """Enqueues a child with ``await delay_async`` and one with a plain ``.delay`` from
        its body on the job loop: both are its children."""
        await child.delay_async(key, "delay_async")
        child.delay(key, "delay")
        return str(self.request.id)

    return SimpleNamespace(
        child=child,
        parent=parent,
        charge=charge,
        interleave=interleave,
        idem=idem,
        governed=governed,
        fails=fails,
        hang=hang,
        outlast=outlast,
        connect=connect,
    )
