"""A guard written outside the platform that adds a declarative check to the admission: while
the Redis key ``<prefix>:killswitch:<task>`` exists, the task's jobs are not admitted (no
claim, no governor token taken) and are re-queued. No Lua, no Redis call of its own, no
``admitted`` hook: the pipeline re-queues a refused job after the check's ``retry_in``."""

from __future__ import annotations

from sandbox_platform import Guard, Job
from sandbox_platform.guards import AdmissionRequest

SWITCH = "killswitch"


class KillSwitch(Guard):
    name = "kill_switch"
    after = ("mode",)

    def contribute(self, job: Job, request: AdmissionRequest) -> None:
        key = f"{job.services.prefix}:{SWITCH}:{job.name}"
        request.require_absent(key, name=self.name, retry_in=0.2)
