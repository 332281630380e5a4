"""The worker side of a guarded job, in the order DESIGN.md gives.

correlation (restored by the ``task_prerun`` signal) -> mode check -> idempotency claim and
governor take (one Redis round trip) -> body, inside a job scope the dry-run lock reads ->
record the run (batched) -> on error: retry with the task's policy, or dead-letter and fire
the exhaustion hook.

Outcomes that are not "run the body": a completed idempotency key returns its stored result;
a key in flight or a governor denial re-queues the same message with a countdown (never a
retry, never a held pool slot: Celery keeps ETA messages aside and raises the prefetch
limit); a message of the other mode, or an idempotency conflict, is dead-lettered.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

import structlog
from celery.exceptions import Ignore, Reject, Retry

from sandbox_platform.alerts import Severity
from sandbox_platform.context import (
    CORRELATION_HEADER,
    IDEMPOTENCY_HEADER,
    MODE_HEADER,
    current_correlation_id,
    request_header,
)
from sandbox_platform.db.models import JobRun
from sandbox_platform.deadletters import store_dead_letter
from sandbox_platform.errors import GovernorUnavailable, IdempotencyConflict, RateLimitedError
from sandbox_platform.guards.admission import Admission
from sandbox_platform.guards.idempotency import fingerprint
from sandbox_platform.guards.retry import (
    ExhaustedEvent,
    check_countdown,
    compute_delay,
    fire_exhausted,
)
from sandbox_platform.hooks import fire_denied
from sandbox_platform.jobscope import JobScope, job_scope
from sandbox_platform.poison import count_redelivery
from sandbox_platform.runtime import Runtime, runtime

if TYPE_CHECKING:
    from sandbox_platform.tasks import GuardedTask

__all__ = ["RUN_STATES", "run_guarded"]

log = structlog.get_logger(__name__)

RUN_STATES = ("succeeded", "failed", "retrying", "deduplicated", "deferred", "dead_lettered")
MIN_DEFER_SECONDS = 0.05
RESULT_RECORD_LIMIT = 4096


@dataclass
class _Job:
    task: GuardedTask
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    rt: Runtime
    started: float
    started_at: datetime
    key: str | None = None
    token: int | None = None

    @property
    def attempt(self) -> int:
        return int(self.task.request.retries or 0) + 1

    def message(self) -> dict[str, Any]:
        """The job as stored in a dead letter: enough to publish it again."""
        return {
            "task": self.task.name,
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
            "queue": (self.task.request.delivery_info or {}).get("routing_key"),
            "retries": self.task.request.retries,
            "headers": {
                CORRELATION_HEADER: current_correlation_id(),
                IDEMPOTENCY_HEADER: self.key,
                MODE_HEADER: request_header(self.task.request, MODE_HEADER),
            },
        }


def run_guarded(task: GuardedTask, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    rt = runtime()
    job = _Job(task, args, kwargs, rt, time.perf_counter(), datetime.now(UTC))
    _check_mode(job)
    _check_poison(job)
    early = _admit(job)
    if early is not None:
        return early.value()
    scope = JobScope(task.request.id or "", task.name, job.attempt, job.key, job.token)
    try:
        with job_scope(scope):
            result = task.run(*args, **kwargs)
    except (Retry, Ignore, Reject):
        _release(job)
        raise
    except Exception as exc:
        _on_error(job, exc)
    _on_success(job, result)
    return result


# -- mode -----------------------------------------------------------------------------------


def _check_mode(job: _Job) -> None:
    message_mode = request_header(job.task.request, MODE_HEADER)
    worker_mode = job.rt.settings.mode.value
    if message_mode and message_mode != worker_mode:
        detail = f"message enqueued in {message_mode} mode reached a {worker_mode} worker"
        _dead_letter(job, "wrong_mode", detail)
        raise Ignore()


# -- poison ---------------------------------------------------------------------------------


def _check_poison(job: _Job) -> None:
    """Quarantine a job whose deliveries keep killing workers (counted per redelivery)."""
    info = job.task.request.delivery_info or {}
    if not info.get("redelivered"):
        return
    settings = job.rt.settings
    redeliveries = count_redelivery(job.rt.redis, settings.key_prefix, job.task.request.id or "")
    if redeliveries == 0:
        return  # handed back by a warm shutdown, not by a lost worker
    if redeliveries < settings.poison_max_deliveries:
        log.warning("job redelivered after a lost worker", redeliveries=redeliveries)
        return
    detail = f"redelivered {redeliveries} times after its worker was lost; quarantined"
    _dead_letter(job, "poison", detail)
    job.rt.alerts.alert(
        Severity.ERROR,
        "poison_quarantined",
        f"{job.task.name}: {detail}",
        task=job.task.name,
        task_id=job.task.request.id,
        redeliveries=redeliveries,
    )
    raise Ignore()


# -- idempotency + governor -----------------------------------------------------------------


def _admit(job: _Job) -> Admission | None:
    """Claim and take in one round trip; return an Admission when the body must not run."""
    task = job.task
    job.key = request_header(task.request, IDEMPOTENCY_HEADER) or task.resolve_idempotency_key(
        job.args, job.kwargs
    )
    resources = task.resolve_resources(job.args, job.kwargs)
    if job.key is None and not resources:
        return None
    try:
        admission = job.rt.admitter.admit(
            job.key,
            fingerprint(list(job.args), job.kwargs),
            resources,
            lease=task.sp_idempotency_lease,
            ttl=task.sp_idempotency_ttl,
        )
    except GovernorUnavailable as exc:
        job.rt.alerts.alert(
            Severity.CRITICAL,
            "redis_unreachable",
            f"governor Redis unreachable: {exc}",
            key="governor",
            task=task.name,
        )
        _on_error(job, exc)
    if admission.status == "acquired":
        job.token = admission.token
        return None
    if admission.status == "done":
        _record(job, "deduplicated")
        log.info("idempotent job already done; stored result returned", key=job.key)
        return admission
    if admission.status == "conflict":
        conflict = IdempotencyConflict(
            f"idempotency key {job.key!r} was used before with different arguments"
        )
        _final_failure(job, conflict, reason="idempotency_conflict")
    _defer(job, admission)


def _defer(job: _Job, admission: Admission) -> NoReturn:
    """Re-publish this very message with a countdown; the retry count stays as it is."""
    wait = max(admission.wait_seconds, MIN_DEFER_SECONDS)
    if admission.status == "denied" and math.isinf(wait):
        error = RateLimitedError(admission.resource or "", wait)
        _final_failure(job, error, reason="over_capacity")  # the cost never fits the bucket
    if admission.status == "denied":
        wait = min(wait, job.rt.settings.visibility_timeout * 0.9)
        log.info("governor denied; job re-queued", resource=admission.resource, wait=wait)
        fire_denied(job.task.name, admission.resource or "", wait)
    else:
        log.info("idempotency key in flight elsewhere; job re-queued", key=job.key, wait=wait)
    job.task.requeue(job.args, job.kwargs, countdown=wait, idempotency_key=job.key)
    _record(job, "deferred")
    raise Ignore()


# -- outcome --------------------------------------------------------------------------------


def _on_success(job: _Job, result: Any) -> None:
    encoded = json.dumps(result, default=repr)
    key, token = job.key, job.token
    if (
        key is not None
        and token is not None
        and not job.rt.idempotency.complete(key, token, encoded)
    ):
        log.warning("idempotency lease lost before completion", key=key)
    _record(job, "succeeded", result=result if len(encoded) <= RESULT_RECORD_LIMIT else None)


def _release(job: _Job) -> None:
    if job.key is None or job.token is None:
        return
    try:
        job.rt.idempotency.release(job.key, job.token)
    except Exception:
        log.exception("could not release idempotency claim", key=job.key)


def _on_error(job: _Job, exc: Exception) -> NoReturn:
    _release(job)
    policy = job.task.sp_retry
    if policy.should_retry(exc, job.attempt):
        delay = compute_delay(policy, job.attempt)
        check_countdown(delay, job.rt.settings.visibility_timeout)
        _record(job, "retrying", error=exc)
        log.warning(
            "job failed; retrying",
            error=repr(exc),
            delay=round(delay, 3),
            max_retries=policy.max_retries,
        )
        raise job.task.retry(exc=exc, countdown=delay, max_retries=policy.max_retries)
    reason = "retries_exhausted" if policy.is_retryable(exc) else "non_retryable"
    _final_failure(job, exc, reason=reason)


def _final_failure(job: _Job, exc: Exception, *, reason: str) -> NoReturn:
    _release(job)
    _record(job, "dead_lettered", error=exc)
    _dead_letter(job, reason, repr(exc))
    fire_exhausted(
        ExhaustedEvent(
            name=job.task.name,
            attempts=job.attempt,
            error=repr(exc),
            correlation_id=current_correlation_id(),
            task_id=job.task.request.id,
            context={"reason": reason, "idempotency_key": job.key},
        )
    )
    raise exc


def _dead_letter(job: _Job, reason: str, detail: str) -> None:
    store_dead_letter(
        job.rt.settings.active_database_url,
        task_id=job.task.request.id or "",
        task_name=job.task.name,
        reason=reason,
        detail=detail,
        message=job.message(),
        correlation_id=current_correlation_id(),
    )


def _record(job: _Job, state: str, *, result: Any = None, error: Exception | None = None) -> None:
    finished = datetime.now(UTC)
    job.rt.recorder.add(
        JobRun,
        task_id=job.task.request.id or "",
        task_name=job.task.name,
        correlation_id=current_correlation_id(),
        mode=job.rt.settings.mode.value,
        state=state,
        attempt=job.attempt,
        started_at=job.started_at,
        finished_at=finished,
        duration_ms=(time.perf_counter() - job.started) * 1000,
        error=repr(error) if error is not None else None,
        result=_as_record(result),
    )


def _as_record(result: Any) -> dict[str, Any] | None:
    if result is None or isinstance(result, dict):
        return result
    return {"value": result}
