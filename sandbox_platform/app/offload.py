"""Run a blocking call on a small thread pool from a coroutine, in the caller's context.

The async enqueue (``delay_async``, ``enqueue_many_async``: :mod:`sandbox_platform.app.tasks`)
runs the *sync* enqueue path here rather than a second, asyncio copy of it: the event loop
keeps running while a worker thread of this process's pool waits on the broker. The call runs
in a copy of the awaiting coroutine's :mod:`contextvars` context, so what the caller bound
(the correlation id, the job scope of a running task, log fields) is what the call sees.

The pool is one per process, created on first use with :data:`MAX_WORKERS` threads named
``sp-enqueue-*``; a forked child gets a fresh one (the parent's threads do not exist there).
A call waiting for a thread is cancelled with its awaiting coroutine; a call already running
runs to completion (a thread cannot be interrupted), and its result or error is dropped.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

__all__ = ["MAX_WORKERS", "THREAD_NAME_PREFIX", "offload", "offload_executor"]

P = ParamSpec("P")
T = TypeVar("T")

#: threads of the pool: at most this many enqueues wait on the broker at once
MAX_WORKERS = 8
THREAD_NAME_PREFIX = "sp-enqueue"

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_owner_pid: int | None = None


def offload_executor() -> ThreadPoolExecutor:
    """This process's pool (created on first use, and again in a forked child)."""
    global _executor, _owner_pid
    pid = os.getpid()
    with _lock:
        if _executor is None or _owner_pid != pid:
            _executor = ThreadPoolExecutor(
                max_workers=MAX_WORKERS, thread_name_prefix=THREAD_NAME_PREFIX
            )
            _owner_pid = pid
        return _executor


async def offload(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` on a pool thread, in a copy of the current context; its
    result, or its exception unchanged."""
    context = contextvars.copy_context()
    call = functools.partial(fn, *args, **kwargs)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(offload_executor(), context.run, call)
