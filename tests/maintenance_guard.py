"""A guard written outside the platform, as an application would: a maintenance window.

While the Redis key ``maintenance`` exists, every job that is not exempt is deferred (the same
message re-queued, no retry used) and counted in ``maintenance:deferred``. It declares one
task option, ``maintenance_exempt``.
"""

from __future__ import annotations

from typing import Any

from sandbox_platform import Guard, Job, Option, Outcome
from sandbox_platform.guards import OptionContext

WINDOW_KEY = "maintenance"
DEFERRED_KEY = "maintenance:deferred"


def _flag(context: OptionContext, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{context.task_name}: maintenance_exempt must be True or False")
    return value


class MaintenanceWindow(Guard):
    name = "maintenance"
    after = ("mode",)  # a message of the other mode is refused first
    before = ("poison",)  # deferred before a redelivery is counted or admission asked
    options = {"maintenance_exempt": Option(default=False, check=_flag)}

    def __init__(self, retry_in: float = 0.3) -> None:
        self.retry_in = retry_in

    def before_run(self, job: Job) -> Outcome | None:
        if job.options["maintenance_exempt"]:
            return None
        client = job.services.redis
        if not client.exists(f"{job.services.prefix}:{WINDOW_KEY}"):
            return None
        client.incr(f"{job.services.prefix}:{DEFERRED_KEY}")
        return Outcome.defer(self.retry_in)
