"""What the running job is, for code deep inside it (dry-run records, effect rows).

Bound by the pipeline around a job's body; empty outside a task. Threads and child
processes that task code starts inherit it (:mod:`sandbox_platform.core.propagation`): a
thread or a forked child through its context, a spawned child through the environment
variable :data:`JOB_ENV`, which carries the job, its correlation id, its mode and the
database its records belong in.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "JOB_ENV",
    "InheritedJob",
    "JobScope",
    "current_job",
    "export_job",
    "in_child_of_job",
    "inherited_job",
    "job_scope",
]

#: a spawned child of a job finds its job here (JSON), set while task code starts it
JOB_ENV = "SANDBOX_PLATFORM_JOB_CONTEXT"


@dataclass(frozen=True)
class JobScope:
    task_id: str
    task_name: str
    attempt: int = 1
    idempotency_key: str | None = None
    fencing_token: int | None = None
    #: the process that runs the job (a child process of it has another pid)
    pid: int = field(default_factory=os.getpid)


@dataclass(frozen=True)
class InheritedJob:
    """A job as a spawned child process received it."""

    job: JobScope
    correlation_id: str | None
    mode: str | None
    database_url: str | None


_current: ContextVar[JobScope | None] = ContextVar("sp_job_scope", default=None)
_parsed: tuple[str, InheritedJob | None] = ("", None)


def inherited_job() -> InheritedJob | None:
    """The job this process was spawned for (from :data:`JOB_ENV`), if any."""
    global _parsed
    raw = os.environ.get(JOB_ENV, "")
    if not raw:
        return None
    if _parsed[0] != raw:
        try:
            data: dict[str, Any] = json.loads(raw)
            inherited = InheritedJob(
                JobScope(**data["job"]),
                data.get("correlation_id"),
                data.get("mode"),
                data.get("database_url"),
            )
        except (ValueError, TypeError, KeyError):
            inherited = None
        _parsed = (raw, inherited)
    return _parsed[1]


def current_job() -> JobScope | None:
    job = _current.get()
    if job is None:
        inherited = inherited_job()
        return inherited.job if inherited is not None else None
    return job


def in_child_of_job() -> bool:
    """True in a process that task code started (its job runs in another process)."""
    job = current_job()
    return job is not None and job.pid != os.getpid()


def export_job(
    job: JobScope, correlation_id: str | None, mode: str | None, database_url: str | None
) -> str:
    """The value of :data:`JOB_ENV` for a child process of ``job``."""
    return json.dumps(
        {
            "job": asdict(job),
            "correlation_id": correlation_id,
            "mode": mode,
            "database_url": database_url,
        }
    )


@contextmanager
def job_scope(scope: JobScope) -> Iterator[JobScope]:
    token = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(token)
