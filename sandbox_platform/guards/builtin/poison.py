"""The poison guard: a job whose deliveries keep killing workers is quarantined.

Redeliveries after a lost worker are counted per task id (warm-shutdown restores are not,
see :mod:`sandbox_platform.coordination.poison`); at ``POISON_MAX_DELIVERIES`` the job is
dead-lettered as ``poison`` instead of being run again.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from sandbox_platform.coordination.admission import Admission
from sandbox_platform.coordination.poison import count_redelivery, uncount_redelivery
from sandbox_platform.guards.base import Guard, Job, Outcome

__all__ = ["PoisonGuard"]

log = structlog.get_logger(__name__)


class PoisonGuard(Guard):
    name = "poison"

    def before_run(self, job: Job) -> Outcome | None:
        if not (job.request.delivery_info or {}).get("redelivered"):
            return None
        services = job.services
        redeliveries = count_redelivery(services.redis, services.prefix, job.task_id)
        if redeliveries == 0:
            return None  # handed back by a warm shutdown, not by a lost worker
        if redeliveries < services.settings.poison_max_deliveries:
            log.warning("job redelivered after a lost worker", redeliveries=redeliveries)
            job.state.put(_Redelivered(redeliveries))
            return None
        detail = f"redelivered {redeliveries} times after its worker was lost; quarantined"
        # (a job still held by a live worker is not poison: see admitted())
        return Outcome.dead_letter(
            "poison",
            detail=detail,
            failed=False,
            record=False,
            context={"redeliveries": redeliveries},
        )

    def admitted(self, job: Job, admission: Admission) -> Outcome | None:
        """A redelivered job whose idempotency key a live worker still holds was delivered
        again by the broker (a job running past the visibility timeout), not after a lost
        worker: that redelivery does not count towards poison."""
        if admission.held_elsewhere and _Redelivered in job.state:
            services = job.services
            uncount_redelivery(services.redis, services.prefix, job.task_id)
        return None


@dataclass(frozen=True)
class _Redelivered:
    """This delivery was counted as a redelivery after a lost worker."""

    count: int
