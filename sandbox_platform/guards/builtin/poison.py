"""The poison guard: a job whose deliveries keep killing workers is quarantined.

Redeliveries after a lost worker are counted per task id (warm-shutdown restores are not,
see :mod:`sandbox_platform.guards.poison`); at ``POISON_MAX_DELIVERIES`` the job is
dead-lettered as ``poison`` instead of being run again.
"""

from __future__ import annotations

import structlog

from sandbox_platform.guards.base import Guard, Job, Outcome
from sandbox_platform.guards.poison import count_redelivery

__all__ = ["PoisonGuard"]

log = structlog.get_logger(__name__)


class PoisonGuard(Guard):
    name = "poison"
    order = 20

    def before_run(self, job: Job) -> Outcome | None:
        if not (job.request.delivery_info or {}).get("redelivered"):
            return None
        services = job.services
        redeliveries = count_redelivery(services.redis, services.prefix, job.task_id)
        if redeliveries == 0:
            return None  # handed back by a warm shutdown, not by a lost worker
        if redeliveries < services.settings.poison_max_deliveries:
            log.warning("job redelivered after a lost worker", redeliveries=redeliveries)
            return None
        detail = f"redelivered {redeliveries} times after its worker was lost; quarantined"
        return Outcome.dead_letter(
            "poison",
            detail=detail,
            failed=False,
            record=False,
            context={"redeliveries": redeliveries},
        )
