"""Admission made with the fetch: planned at enqueue, used at run.

A guarded job that runs at once carries the admission it will ask for (``ADMIT_HEADER``:
idempotency key, fingerprint, lease, ttl, resources and costs), written at enqueue by the
guards that contribute to admission — when every one of them can plan at enqueue
(``EnqueueShortcuts.plans_at_enqueue``). The platform's Redis transport runs that admission
inside the script that fetches the message (``broker/lua/fetch.lua``, the same Lua as
``admit.lua``) and hands the answer over in ``ADMITTED_HEADER``; the pipeline then skips its
own admission round trip.

The pipeline still builds the job's admission request itself and uses the transport's answer
only when the request is exactly the plan the answer was made for. When it is not (another
version of the task, a guard that changed its mind), or when a guard stops the job before
admission, a claim the transport acquired is released; tokens it took are not given back
(the governor under-admits; it never over-admits).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import structlog

from sandbox_platform.coordination.admission import (
    Admission,
    AdmissionRequest,
    admission_from_header,
    plan_of,
)
from sandbox_platform.coordination.idempotency import IdempotencyStore
from sandbox_platform.core.context import ADMIT_HEADER, ADMITTED_HEADER
from sandbox_platform.guards.base import EnqueueCall, Guard, Job
from sandbox_platform.guards.shortcuts import EnqueueShortcuts

__all__ = ["plan_admission", "prefetched_admission", "release_prefetched"]

log = structlog.get_logger(__name__)


class _Enqueued:
    """The task of an :class:`EnqueueCall`, as :meth:`Guard.contribute` reads a job."""

    def __init__(self, call: EnqueueCall) -> None:
        self.name = call.task_name
        self.sp_options = call.task_options
        self.sp_argnames = call.argnames
        headers = dict(call.options.get("headers") or {})
        self.request = SimpleNamespace(id=call.task_id, retries=0, headers=headers)

    def run(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - never run
        raise NotImplementedError

    def requeue(self, *args: Any, **kwargs: Any) -> None:  # pragma: no cover - never run
        raise NotImplementedError

    def retry(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - never run
        raise NotImplementedError


def _plans(guard: Guard) -> bool:
    return isinstance(guard, EnqueueShortcuts) and guard.plans_at_enqueue


def plan_admission(call: EnqueueCall, contributors: Sequence[Guard]) -> None:
    """Write the job's admission plan into its headers (jobs that run at once only)."""
    if not contributors or not all(_plans(guard) for guard in contributors):
        return
    if call.options.get("countdown") is not None or call.options.get("eta") is not None:
        return
    # a copy of the call's state: what a guard worked out at enqueue (e.g. the arguments'
    # fingerprint) it need not work out again here
    view = Job(_Enqueued(call), call.args, call.kwargs, call.services, state=call.state.copy())
    request = AdmissionRequest()
    for guard in contributors:
        guard.contribute(view, request)
    if request and not request.checks:  # checks are made by the worker, not the fetch
        call.add_header(ADMIT_HEADER, plan_of(request))


def prefetched_admission(job: Job, request: AdmissionRequest) -> Admission | None:
    """The transport's admission of this delivery, if it made one for exactly ``request``."""
    answer = job.header(ADMITTED_HEADER)
    if not answer:
        return None
    plan = job.header(ADMIT_HEADER)
    admission = admission_from_header(answer, _claim_key(plan))
    if admission is not None and plan == plan_of(request):
        return admission
    log.warning("admission made with the fetch does not match the job; admitting again")
    _release(job, plan, admission)
    return None


def release_prefetched(job: Job) -> None:
    """The job stops before admission: give back a claim the transport acquired for it."""
    answer = job.header(ADMITTED_HEADER)
    if answer:
        plan = job.header(ADMIT_HEADER)
        _release(job, plan, admission_from_header(answer, _claim_key(plan)))


def _claim_key(plan: Any) -> str | None:
    if isinstance(plan, list) and plan and isinstance(plan[0], str) and plan[0]:
        return plan[0]
    return None


def _release(job: Job, plan: Any, admission: Admission | None) -> None:
    key = _claim_key(plan)
    if key is None or admission is None or admission.status != "acquired":
        return
    if admission.token is None:
        return
    try:
        IdempotencyStore(job.services.redis, job.services.prefix).release(key, admission.token)
    except Exception:
        log.exception("could not release an idempotency claim made with the fetch", key=key)
