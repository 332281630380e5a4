"""The job's context follows task code into the threads and processes it starts.

Python does not carry context variables into a new thread, a thread pool's work item or a
spawned process, so an irreversible call made there would lose its task id and correlation
id. :func:`install_context_propagation` (a worker calls it once at start) makes them follow,
while a job is running:

* ``threading.Thread.start`` runs the thread in a copy of the starting context;
* ``ThreadPoolExecutor.submit`` (and so ``loop.run_in_executor``) runs each work item in a
  copy of the submitting job's context, and a work item submitted outside any job in a
  fresh empty context: Celery's threads pool starts every job that way, so nothing one job
  bound (correlation id, log fields, job scope) can be seen by the next on the same thread;
* ``multiprocessing`` ``Process.start`` hands a spawned (or forkserver) child the job through
  the environment variable :data:`~sandbox_platform.core.jobscope.JOB_ENV`; a forked child
  inherits the context with the memory.

asyncio tasks copy their context already. Threads named ``sandbox-platform-*`` (the
platform's own: recorder, metrics, webhook, liveness, watchdog) never get a job's context.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.process import BaseProcess
from typing import Any

from sandbox_platform.core.context import current_correlation_id
from sandbox_platform.core.jobscope import JOB_ENV, JobScope, current_job, export_job

__all__ = ["PLATFORM_THREAD_PREFIX", "install_context_propagation", "platform_thread"]

#: the name prefix of the platform's own threads, which carry no job context
PLATFORM_THREAD_PREFIX = "sandbox-platform-"

_env_lock = threading.Lock()
#: set on the wrappers, so that installing twice changes nothing
_MARK = "__sandbox_platform_propagates__"


def platform_thread(target: Callable[[], object], name: str) -> threading.Thread:
    """A daemon thread of the platform's own (never in a job's context)."""
    return threading.Thread(target=target, name=f"{PLATFORM_THREAD_PREFIX}{name}", daemon=True)


def _thread_start(original: Callable[[threading.Thread], None]) -> Callable[..., None]:
    def start(self: threading.Thread) -> None:
        if current_job() is not None and not self.name.startswith(PLATFORM_THREAD_PREFIX):
            context = contextvars.copy_context()
            run = self.run
            self.run = lambda: context.run(run)  # type: ignore[method-assign]
        original(self)

    setattr(start, _MARK, True)
    return start


def _pool_submit(original: Callable[..., Future[Any]]) -> Callable[..., Future[Any]]:
    def submit(
        self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Future[Any]:
        if current_job() is not None:
            return original(self, contextvars.copy_context().run, fn, *args, **kwargs)
        # outside any job (Celery's threads pool handing a job to a pool thread, among
        # others): a fresh, empty context, so nothing one work item bound is seen by the next
        # on the same thread, whatever context that thread was started in
        return original(self, contextvars.Context().run, fn, *args, **kwargs)

    return submit


def _child_env(job: JobScope) -> str:
    return export_job(job, current_correlation_id())


def _process_start(original: Callable[[BaseProcess], None]) -> Callable[[BaseProcess], None]:
    def start(self: BaseProcess) -> None:
        job = current_job()
        if job is None:
            original(self)
            return
        with _env_lock:
            previous = os.environ.get(JOB_ENV)
            os.environ[JOB_ENV] = _child_env(job)
            try:
                original(self)
            finally:
                if previous is None:
                    os.environ.pop(JOB_ENV, None)
                else:
                    os.environ[JOB_ENV] = previous

    return start


def install_context_propagation() -> None:
    """Make the job's context follow task code into threads, pools and processes (once per
    process: the wrappers of the standard library's classes are marked). A spawned child
    gets the mode and database of the job's own app (from the job scope)."""
    if getattr(threading.Thread.start, _MARK, False):
        return
    threading.Thread.start = _thread_start(threading.Thread.start)  # type: ignore[method-assign]
    ThreadPoolExecutor.submit = _pool_submit(ThreadPoolExecutor.submit)  # type: ignore[method-assign]
    BaseProcess.start = _process_start(BaseProcess.start)  # type: ignore[method-assign,assignment]
