"""What the running job is, for code deep inside it (dry-run records, effect rows).

Bound by the pipeline around a job's body; empty outside a task. The scope names the job
*and the app it belongs to*: ``settings`` are that app's (its mode, its database) and
``services`` its per-process parts (the dry-run lock, the egress policy: see
``guards.base.job_services``). Code inside a job finds them here, never in a process-wide
slot, so two apps of different modes in one process, or many jobs interleaved on threads,
never see each other's. Threads and child processes that task code starts inherit it
(:mod:`sandbox_platform.core.propagation`): a thread or a forked child through its context,
a spawned child through the environment variable :data:`JOB_ENV`, which carries the job, its
correlation id, its mode and the database its records belong in.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from typing import Any

from sandbox_platform.core.settings import Settings

__all__ = [
    "JOB_ENV",
    "InheritedJob",
    "JobScope",
    "current_job",
    "export_job",
    "in_child_of_job",
    "inherited_job",
    "job_scope",
    "scope_lineage",
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
    #: the settings of the job's app (its mode, its databases); None in a spawned child
    settings: Settings | None = field(default=None, compare=False, repr=False)
    #: the job's app's per-process parts (``guards.base.Services``); opaque at this layer
    services: Any = field(default=None, compare=False, repr=False)
    #: the job's Celery request (``task.request`` of an async body on the job loop)
    request: Any = field(default=None, compare=False, repr=False)

    @property
    def mode(self) -> str | None:
        return self.settings.mode.value if self.settings is not None else None

    @property
    def database_url(self) -> str | None:
        return self.settings.active_database_url if self.settings is not None else None

    def exported(self) -> dict[str, Any]:
        """The plain fields, as a spawned child receives them (not the app's settings and
        services: a child of another process rebuilds what it needs from the mode and
        database that travel beside them)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.compare}


@dataclass(frozen=True)
class InheritedJob:
    """A job as a spawned child process received it."""

    job: JobScope
    correlation_id: str | None
    mode: str | None
    database_url: str | None


_current: ContextVar[JobScope | None] = ContextVar("sp_job_scope", default=None)


def inherited_job() -> InheritedJob | None:
    """The job this process was spawned for (from :data:`JOB_ENV`), if any."""
    raw = os.environ.get(JOB_ENV, "")
    return _parse_inherited(raw) if raw else None


@functools.lru_cache(maxsize=4)
def _parse_inherited(raw: str) -> InheritedJob | None:
    try:
        data: dict[str, Any] = json.loads(raw)
        return InheritedJob(
            JobScope(**data["job"]),
            data.get("correlation_id"),
            data.get("mode"),
            data.get("database_url"),
        )
    except (ValueError, TypeError, KeyError):
        return None


def current_job() -> JobScope | None:
    job = _current.get()
    if job is None:
        inherited = inherited_job()
        return inherited.job if inherited is not None else None
    return job


def scope_lineage() -> tuple[str, str] | None:
    """(root id, parent id) for a job enqueued now by the running job, from its scope: where
    Celery has no current task to ask (an async job's body on the job loop, or a thread it
    hands an enqueue to). None outside a job."""
    scope = _current.get()
    request = scope.request if scope is not None else None
    if request is None or not getattr(request, "id", None):
        return None
    return (getattr(request, "root_id", None) or request.id), request.id


def in_child_of_job() -> bool:
    """True in a process that task code started (its job runs in another process)."""
    job = current_job()
    return job is not None and job.pid != os.getpid()


def export_job(job: JobScope, correlation_id: str | None) -> str:
    """The value of :data:`JOB_ENV` for a child process of ``job``: the job, its correlation
    id, its app's mode and the database its records belong in."""
    inherited = inherited_job() if job.settings is None else None
    return json.dumps(
        {
            "job": job.exported(),
            "correlation_id": correlation_id,
            "mode": job.mode or (inherited.mode if inherited else None),
            "database_url": job.database_url or (inherited.database_url if inherited else None),
        }
    )


@contextmanager
def job_scope(scope: JobScope) -> Iterator[JobScope]:
    token = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(token)
