"""What the running job is, for code deep inside it (dry-run records, effect rows).

Bound by the guarded task around its body; empty outside a task.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["JobScope", "current_job", "job_scope"]


@dataclass(frozen=True)
class JobScope:
    task_id: str
    task_name: str
    attempt: int = 1
    idempotency_key: str | None = None
    fencing_token: int | None = None


_current: ContextVar[JobScope | None] = ContextVar("sp_job_scope", default=None)


def current_job() -> JobScope | None:
    return _current.get()


@contextmanager
def job_scope(scope: JobScope) -> Iterator[JobScope]:
    token = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(token)
