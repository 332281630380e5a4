"""The time-limit guard: a job past its hard time limit is stopped even on the solo pool.

Celery enforces ``time_limit`` only in a prefork pool; a solo consumer runs the job itself, so
a job that never returns would hold it forever. Under ``sandbox-platform worker`` (which sets
``SANDBOX_PLATFORM_DEADLINE_DIR`` for its solo consumers) this guard writes the running job's
deadline and message to ``<dir>/<pid>.json`` while the job runs; the supervisor kills a
consumer whose job is overdue, dead-letters the job ``timed_out`` and starts the consumer
again (:mod:`sandbox_platform.procs.deadlines`). Jobs without a time limit cost nothing.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from sandbox_platform.core.context import CORRELATION_HEADER, MODE_HEADER, current_correlation_id
from sandbox_platform.guards.base import Guard, Job, Outcome, Services

__all__ = ["DEADLINE_DIR_ENV", "TimeLimitGuard", "deadline_file"]

DEADLINE_DIR_ENV = "SANDBOX_PLATFORM_DEADLINE_DIR"


def deadline_file(directory: Path, pid: int) -> Path:
    return directory / f"{pid}.json"


class TimeLimitGuard(Guard):
    name = "time_limit"

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory

    def bind(self, services: Services) -> TimeLimitGuard:
        value = os.environ.get(DEADLINE_DIR_ENV)
        return TimeLimitGuard(Path(value) if value else None)

    def before_run(self, job: Job) -> Outcome | None:
        if self.directory is None:
            return None
        limit = job.time_limit
        if limit is None:
            return None
        info = {
            "task_id": job.task_id,
            "task_name": job.name,
            "limit": limit,
            "deadline": time.time() + limit,
            "message": {
                "task": job.name,
                "args": list(job.args),
                "kwargs": dict(job.kwargs),
                "queue": (job.request.delivery_info or {}).get("routing_key"),
                "headers": {
                    CORRELATION_HEADER: current_correlation_id(),
                    MODE_HEADER: job.header(MODE_HEADER),
                    **job.headers,
                },
            },
        }
        path = deadline_file(self.directory, os.getpid())
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(info, default=repr))
        temporary.replace(path)  # the supervisor never reads half a file
        job.state.put(_DeadlineFile(path))
        return None

    def after_run(self, job: Job, outcome: Outcome) -> None:
        written = job.state.pop(_DeadlineFile)
        if written is not None:
            written.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class _DeadlineFile:
    """The job's deadline file, removed after the run."""

    path: Path
