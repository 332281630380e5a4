"""The event loop of a process, where the bodies of ``async def`` jobs run.

A worker process has one asyncio event loop on a daemon thread, started with the first async
job (and again in a forked child, which does not inherit the parent's thread). The thread
that delivers a job (the solo consumer's, or a threads-pool thread) hands the coroutine of
its body to the loop and waits for it; the body runs there as its own asyncio ``Task`` in a
copy of the job's :class:`contextvars.Context`, so everything the job bound (its scope, its
correlation id, its app's dry-run lock and egress policy, its secret mask) is the body's and
no other body's, however many are in flight on the loop at once. Async clients built inside
a body (httpx, redis.asyncio, asyncpg) all live on that one loop, so a client the task module
keeps for reuse serves every job of the process.

A job's time limit is a cancellation: at the limit its Task is cancelled (the body sees
``asyncio.CancelledError`` at its next ``await``), the caller stops waiting after a short
grace and the job counts as timed out; the loop and the other bodies go on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import os
import threading
from collections.abc import Coroutine
from typing import Any

from sandbox_platform.core.propagation import PLATFORM_THREAD_PREFIX

__all__ = ["CANCEL_GRACE", "AsyncTimeLimitExceeded", "JobLoop", "job_loop", "on_job_loop"]

#: seconds a timed-out body gets to finish cancelling (its ``finally`` blocks)
CANCEL_GRACE = 0.5


class AsyncTimeLimitExceeded(Exception):
    """An async body ran past its time limit and was cancelled."""

    def __init__(self, limit: float, *, finished: bool) -> None:
        self.limit = limit
        #: whether the body ended within the grace after its cancellation
        self.finished = finished
        super().__init__(f"cancelled after its time limit of {limit:g}s")


class JobLoop:
    """One event loop on a daemon thread; :meth:`run` runs a coroutine there and waits."""

    def __init__(self, name: str = f"{PLATFORM_THREAD_PREFIX}job-loop") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread if self._pid == os.getpid() else None

    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop of this process (started on first use, again after a fork)."""
        loop = self._loop
        if loop is not None and self._pid == os.getpid():
            return loop
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                self._start()
            assert self._loop is not None
            return self._loop

    def _start(self) -> None:
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(started.set)
            loop.run_forever()

        # a platform thread: it never takes the context of the job that happened to start it
        thread = threading.Thread(target=serve, name=self._name, daemon=True)
        thread.start()
        started.wait()
        self._loop, self._thread, self._pid = loop, thread, os.getpid()

    def run(
        self,
        coroutine: Coroutine[Any, Any, Any],
        *,
        context: contextvars.Context,
        limit: float | None = None,
    ) -> Any:
        """Run ``coroutine`` on the loop as a Task in ``context``; return its value or raise
        its error. Past ``limit`` seconds the Task is cancelled and
        :class:`AsyncTimeLimitExceeded` is raised (after it ended, or after
        :data:`CANCEL_GRACE`)."""
        if threading.current_thread() is self.thread:
            coroutine.close()
            raise RuntimeError(
                "a job's body cannot be run from the job loop itself: "
                "await the async task's function, or enqueue it"
            )
        loop = self.loop()
        outcome: concurrent.futures.Future[Any] = concurrent.futures.Future()
        started: list[asyncio.Task[Any]] = []

        def start() -> None:
            task = loop.create_task(coroutine, context=context)
            started.append(task)
            task.add_done_callback(lambda done: _settle(done, outcome))

        loop.call_soon_threadsafe(start)
        concurrent.futures.wait([outcome], timeout=limit)
        if outcome.done():
            return outcome.result()
        assert limit is not None
        loop.call_soon_threadsafe(lambda: [task.cancel() for task in started])
        concurrent.futures.wait([outcome], timeout=CANCEL_GRACE)
        raise AsyncTimeLimitExceeded(limit, finished=outcome.done())


def _settle(task: asyncio.Task[Any], outcome: concurrent.futures.Future[Any]) -> None:
    if task.cancelled():
        outcome.set_exception(asyncio.CancelledError())
        return
    error = task.exception()
    if error is not None:
        outcome.set_exception(error)
    else:
        outcome.set_result(task.result())


_LOOP = JobLoop()


def job_loop() -> JobLoop:
    """The job loop of this process (machinery shared by every app of the process, like its
    threads: what differs per app or job travels in each job's context)."""
    return _LOOP


def on_job_loop() -> bool:
    """True on the job loop's thread (inside an async job's body)."""
    return threading.current_thread() is _LOOP.thread
