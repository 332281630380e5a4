"""The fakes a :class:`~sandbox_platform.guards.testing.GuardHarness` builds its services and
jobs from: a recorder that keeps its rows in memory, a task that is one job's delivery, and
the test Redis's URL."""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

from sandbox_platform.db.models import Base
from sandbox_platform.db.recorder import Recorder

__all__ = ["FakeTask", "MemoryRecorder", "default_redis_url"]


def default_redis_url() -> str:
    """``$SP_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379``), db ``$SP_TEST_REDIS_DB``
    (default 9)."""
    base = os.environ.get("SP_TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
    return f"{base}/{int(os.environ.get('SP_TEST_REDIS_DB', '9'))}"


class MemoryRecorder(Recorder):
    """A :class:`Recorder` that keeps its rows in :attr:`rows` instead of a database."""

    def __init__(self) -> None:
        super().__init__("sqlite://")
        atexit.unregister(self.close)  # nothing to write at exit
        self.rows: list[tuple[type[Base], dict[str, Any]]] = []

    def add(self, model: type[Base], **values: Any) -> None:
        self._write([(model, values)])

    def _write(self, rows: list[tuple[type[Base], dict[str, Any]]]) -> None:
        with self._lock:
            self.rows += [(model, dict(values)) for model, values in rows]

    def _insert_new(self, model: type[Base], rows: list[dict[str, Any]]) -> None:
        self._write([(model, row) for row in rows])


class FakeTask:
    """A guarded task as the pipeline sees it (``GuardedTaskLike``), one per job: its
    ``request`` is the job's delivery. ``requeue`` and ``retry`` only record their calls."""

    def __init__(
        self,
        name: str,
        body: Callable[..., Any],
        options: Mapping[str, Any],
        argnames: Sequence[str],
        request: SimpleNamespace,
        time_limit: float | None = None,
    ) -> None:
        self.name = name
        self.body = body
        self.sp_options = options
        self.sp_argnames = argnames
        self.request = request
        self.time_limit = time_limit
        self.app = SimpleNamespace(conf={})  # Job.time_limit falls back to the app's
        self.requeued: list[dict[str, Any]] = []
        self.retried: list[dict[str, Any]] = []

    @property
    def run(self) -> Callable[..., Any]:
        """The body itself, as Celery's ``task.run`` (its signature is the task's)."""
        return self.body

    def requeue(
        self,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        countdown: float,
        headers: Mapping[str, Any],
    ) -> None:
        self.requeued.append(
            {"args": args, "kwargs": kwargs, "countdown": countdown, "headers": headers}
        )

    def retry(self, *args: Any, **kwargs: Any) -> Any:
        self.retried.append(dict(kwargs))
