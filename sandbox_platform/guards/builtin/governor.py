"""The governor guard: every resource a job declares is held to its quota, cluster-wide.

Option ``governor``: a resource template, or a list of templates and ``(template, cost)``
pairs (``governor=["payments", ("api:{user_id}", 2)]``). The tokens are taken in the one
admission round trip, from every resource or from none. A denial re-queues the same message
with a countdown equal to the bucket's wait (capped below the broker's visibility timeout):
never a retry, never a held pool slot. A cost no bucket can ever hold dead-letters the job
(``over_capacity``).

The re-queued message carries when the governor first deferred the job
(:data:`WAITING_SINCE_HEADER`), so every later denial reports how long the job has been kept
waiting (``GovernorDenied.waited_seconds``) without asking Redis.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import structlog

from sandbox_platform.coordination.admission import Admission, AdmissionRequest
from sandbox_platform.coordination.governor import resolve_resource
from sandbox_platform.core.context import current_correlation_id
from sandbox_platform.core.errors import RateLimitedError
from sandbox_platform.guards.base import Guard, Job, Option, OptionContext, Outcome
from sandbox_platform.guards.events import GovernorAdmitted, GovernorDenied
from sandbox_platform.guards.shortcuts import EnqueueShortcuts
from sandbox_platform.guards.templates import check_template

__all__ = ["WAITING_SINCE_HEADER", "GovernorGuard", "governor_specs", "waiting_since"]

log = structlog.get_logger(__name__)


#: when the governor first deferred the job (epoch seconds), carried by its re-queues
WAITING_SINCE_HEADER = "sp_governor_waiting_since"


def waiting_since(value: Any, now: float) -> float:
    """The first deferral's time from the header ``value``; ``now`` when there is none (the
    first deferral) or it is not a time (not a number, or later than ``now``)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return now
    try:
        since = float(value)
    except ValueError:
        return now
    return since if math.isfinite(since) and since <= now else now


def governor_specs(context: OptionContext, value: Any) -> tuple[tuple[str, int], ...]:
    """The ``governor`` option as ``(template, cost)`` pairs, checked."""
    items: Iterable[Any] = [value] if isinstance(value, str) else (value or [])
    specs: list[tuple[str, int]] = []
    for item in items:
        template, cost = (item, 1) if isinstance(item, str) else tuple(item)
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
            raise ValueError(
                f"{context.task_name}: governor cost for {template!r} must be an int >= 1"
            )
        specs.append((check_template(context, "governor", template), cost))
    return tuple(specs)


class GovernorGuard(EnqueueShortcuts, Guard):
    name = "governor"
    plans_at_enqueue = True
    options = {"governor": Option(default=(), check=governor_specs)}

    def contribute(self, job: Job, request: AdmissionRequest) -> None:
        argnames = job.task.sp_argnames
        resources = []
        for template, cost in job.options["governor"]:
            resource = resolve_resource(template, job.args, job.kwargs, argnames)
            request.take(resource, cost)
            resources.append(resource)
        job.state.put(_Taken(tuple(resources)))

    def admitted(self, job: Job, admission: Admission) -> Outcome | None:
        taken = job.state.get(_Taken)
        resources = taken.resources if taken is not None else ()
        if admission.status == "acquired" and resources:
            job.services.events.emit(
                GovernorAdmitted(job.name, job.task_id, None, resources=resources)
            )
        if admission.status != "denied":
            return None
        resource = admission.resource or ""
        if math.isinf(admission.wait_seconds):  # the cost never fits the bucket
            error = RateLimitedError(resource, admission.wait_seconds)
            return Outcome.dead_letter("over_capacity", error=error)
        visibility = job.services.settings.redelivery_timeout
        outcome = Outcome.defer(min(admission.wait_seconds, visibility * 0.9))
        now = time.time()
        since = waiting_since(job.header(WAITING_SINCE_HEADER), now)
        job.headers[WAITING_SINCE_HEADER] = since
        log.info("governor denied; job re-queued", resource=resource, wait=outcome.countdown)
        job.services.events.emit(
            GovernorDenied(
                job.name,
                job.task_id,
                current_correlation_id(),
                resource=resource,
                wait_seconds=outcome.countdown,
                waited_seconds=now - since,
            )
        )
        return outcome


@dataclass(frozen=True)
class _Taken:
    """The resources the job's admission takes tokens from."""

    resources: tuple[str, ...]
