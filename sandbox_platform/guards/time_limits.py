"""Hard time limits of jobs that run on threads: the overdue job is stopped, the others go on.

Celery enforces ``time_limit`` only in a prefork pool (it kills the child process); a solo
consumer is stopped by its supervisor (``guards/builtin/time_limit.py``). Neither works for
many jobs in flight on threads: a thread cannot be killed, and killing the process would take
every job in flight down with the hung one. So the pipeline watches the jobs it runs on
threads (:class:`ThreadDeadlines`, one watcher thread per process and app). When one is
overdue:

1. it is dead-lettered ``timed_out`` at once (dead letter, run record, alert, and a Redis
   marker so a redelivery of its message is dropped, not run again) by ``on_overdue``;
2. :class:`JobTimeLimitExceeded` is raised in its thread (``PyThreadState_SetAsyncExc``, as
   Dramatiq's time limits do). Python code sees it at once; a thread blocked in a C call (a
   socket read without a timeout, ``time.sleep``) sees it when that call returns. Whatever the
   job does after its deadline is not recorded as a success: when its thread comes back, the
   pipeline acknowledges the message as already dead-lettered.

A job whose thread never comes back holds its pool slot, and its message stays
unacknowledged until the worker stops; a warm shutdown hands it back and its redelivery is
dropped (the marker of step 1). Jobs without a time limit cost nothing here.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog

__all__ = ["JobTimeLimitExceeded", "ThreadDeadlines", "Watched"]

log = structlog.get_logger(__name__)

#: how often the watcher looks at the deadlines
CHECK_INTERVAL = 0.1


class JobTimeLimitExceeded(BaseException):  # Celery's name is TimeLimitExceeded
    """Raised inside a job's thread past its hard time limit. A ``BaseException``, so task
    code's ``except Exception`` does not swallow it."""


@dataclass(eq=False)
class Watched:
    """One job under watch: what the overdue handler needs, taken on the job's own thread."""

    job: Any
    limit: float
    deadline: float
    thread_id: int
    correlation_id: str | None
    message: dict[str, Any]
    #: set when the deadline passed (by the watcher)
    timed_out: threading.Event = field(default_factory=threading.Event)
    #: the dead letter was stored when it timed out (the late outcome only acknowledges)
    dead_lettered: bool = False
    #: the job's thread is inside the task's body (only then is the exception raised there)
    in_body: bool = True


Overdue = Callable[[Watched], bool]


class ThreadDeadlines:
    """The watcher of one pipeline. ``on_overdue(watched)`` dead-letters the job and says
    whether it stored the dead letter."""

    def __init__(self, on_overdue: Overdue, interval: float = CHECK_INTERVAL) -> None:
        self.on_overdue = on_overdue
        self.interval = interval
        self._watched: set[Watched] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextmanager
    def watching(
        self, job: Any, limit: float | None, correlation_id: str | None, message: dict[str, Any]
    ) -> Iterator[Watched | None]:
        """Watch the body of ``job`` (on the current thread) for ``limit`` seconds; yields
        None when there is nothing to watch."""
        if not limit:
            yield None
            return
        watched = Watched(
            job=job,
            limit=limit,
            deadline=time.monotonic() + limit,
            thread_id=threading.get_ident(),
            correlation_id=correlation_id,
            message=message,
        )
        with self._lock:
            self._watched.add(watched)
            self._ensure_thread()
        try:
            yield watched
        finally:
            watched.in_body = False
            with self._lock:
                self._watched.discard(watched)

    def watched(self) -> int:
        with self._lock:
            return len(self._watched)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._loop, name="sandbox-platform-deadlines", daemon=True
            )
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                overdue = [
                    w for w in self._watched if w.deadline <= now and not w.timed_out.is_set()
                ]
                for watched in overdue:
                    watched.timed_out.set()
            for watched in overdue:
                self._time_out(watched)
            time.sleep(self.interval)

    def _time_out(self, watched: Watched) -> None:
        try:
            watched.dead_lettered = self.on_overdue(watched)
        except Exception:
            log.exception("could not dead-letter a job past its time limit")
        if watched.in_body:
            _raise_in(watched.thread_id, JobTimeLimitExceeded)


def _raise_in(thread_id: int, exception: type[BaseException]) -> None:
    """Raise ``exception`` in the thread ``thread_id`` at its next Python instruction."""
    changed = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exception)
    )
    if changed > 1:  # more than one thread state: undo (the documented way)
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)
