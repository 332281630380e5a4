"""The threads pool of a platform worker: many jobs in flight per process.

The platform's jobs wait on the network (a payment provider, a mail server, a partner API):
one process runs up to ``--concurrency`` of them at once on threads. It is Celery's threads
pool (``--pool threads``; a platform app's worker swaps it in, app/programs.py) with three
differences:

* every job runs in a fresh, empty :class:`contextvars.Context`, so nothing one job bound (its
  correlation id, log fields, job scope: its app, mode and dry-run lock) is ever visible to
  the next job on the same thread;
* its threads are daemon threads and a warm shutdown waits for running jobs at most
  ``shutdown_timeout`` seconds: a job whose thread is stuck (in a socket read with no
  timeout, past its time limit, already dead-lettered) never holds the process, and what it
  held is handed back when the consumer's channel closes (kombu restores every unacknowledged
  message). Jobs not yet started are handed back at once;
* an error of the pool's own machinery is logged, never lost in a future nobody reads.

Hard time limits (``time_limit``) of jobs on these threads are enforced by the guard pipeline
(``guards/time_limits.py``): an overdue job is dead-lettered ``timed_out`` while the other
jobs of the process go on.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog
from celery.concurrency.base import BasePool, apply_target

__all__ = ["DEFAULT_SHUTDOWN_TIMEOUT", "JobThreads", "PlatformThreadPool"]

log = structlog.get_logger(__name__)

#: seconds a warm shutdown waits for the jobs still running (below Kubernetes' grace period)
DEFAULT_SHUTDOWN_TIMEOUT = 90.0


class Work:
    """One job handed to the threads: what to call, and whether it started and ended."""

    __slots__ = ("__weakref__", "args", "done", "fn", "started")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.started = False
        self.done = threading.Event()

    # Celery keeps a weak reference to the result of ``apply_async`` and may ask for these
    def wait(self, timeout: float | None = None) -> None:
        self.done.wait(timeout)

    def get(self, timeout: float | None = None) -> None:
        self.done.wait(timeout)

    def terminate(self, signal: Any = None) -> None:
        """A thread cannot be killed: a cancelled job that has not started never will."""


class JobThreads:
    """``count`` daemon threads taking work from one queue, each item in a fresh context."""

    def __init__(self, count: int, name: str = "job-thread") -> None:
        self.count = count
        self._queue: queue.SimpleQueue[Work | None] = queue.SimpleQueue()
        self._running: set[Work] = set()
        self._lock = threading.Lock()
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
            for i in range(1, count + 1)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Work:
        work = Work(fn, args)
        if self._stopped:
            work.done.set()  # never runs: the consumer hands its message back at close
            return work
        self._queue.put(work)
        return work

    def _loop(self) -> None:
        while True:
            work = self._queue.get()
            if work is None or self._stopped:
                if work is not None:
                    work.done.set()
                return
            with self._lock:
                self._running.add(work)
            work.started = True
            try:
                contextvars.Context().run(work.fn, *work.args)
            except BaseException:
                log.exception("the threads pool could not run a job")
            finally:
                with self._lock:
                    self._running.discard(work)
                work.done.set()

    def running(self) -> int:
        with self._lock:
            return len(self._running)

    def alive(self) -> int:
        return sum(thread.is_alive() for thread in self._threads)

    def shutdown(self, timeout: float) -> int:
        """Start nothing more (queued work is dropped: its messages are handed back) and wait
        up to ``timeout`` seconds for the running jobs; how many still run."""
        self._stopped = True
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                running = list(self._running)
            left = deadline - time.monotonic()
            if not running or left <= 0:
                return len(running)
            running[0].done.wait(min(left, 0.5))


class PlatformThreadPool(BasePool):
    """Celery's ``threads`` pool, as described in the module."""

    body_can_be_buffer = True
    signal_safe = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shutdown_timeout = DEFAULT_SHUTDOWN_TIMEOUT
        settings = getattr(self.app, "platform_settings", None)
        if settings is not None:
            self.shutdown_timeout = float(settings.shutdown_timeout)
        self.threads = JobThreads(int(self.limit or 1))

    def on_apply(  # type: ignore[override]  # Celery's pools take these by keyword
        self,
        target: Callable[..., Any],
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        callback: Callable[..., Any] | None = None,
        accept_callback: Callable[..., Any] | None = None,
        **_: Any,
    ) -> Work:
        return self.threads.submit(apply_target, target, args, kwargs, callback, accept_callback)

    def on_stop(self) -> None:
        still = self.threads.shutdown(self.shutdown_timeout)
        if still:
            log.error(
                "warm shutdown: jobs still running after the shutdown timeout; their messages "
                "are handed back to the queue",
                jobs=still,
                shutdown_timeout=self.shutdown_timeout,
            )
        super().on_stop()

    @property
    def info(self) -> dict[str, Any]:
        """What ``celery inspect stats`` shows under ``pool``."""
        info: dict[str, Any] = dict(super().info)
        info.update({"max-concurrency": self.limit, "threads": self.threads.alive()})
        return info
