"""The retry guard: a failed run is retried with the task's policy, or dead-lettered.

Option ``retry``: a :class:`~sandbox_platform.guards.retry.RetryPolicy` (default: 3 retries,
1 s base, 60 s cap, full jitter). The delay is a countdown on the same message (Celery's
retry); when the policy gives up the job is dead-lettered ``retries_exhausted`` (or
``non_retryable`` for an exception the policy does not retry) and its error raised. An
exception that names its own ``dead_letter_reason`` (a failing simulator, a blocked
connection in sandbox) is a bug, not a transient failure: dead-lettered at once.
"""

from __future__ import annotations

from typing import Any

import structlog

from sandbox_platform.guards.base import Guard, Job, Option, OptionContext, Outcome
from sandbox_platform.guards.retry import RetryPolicy, compute_delay

__all__ = ["DEFAULT_RETRY", "RetryGuard"]

log = structlog.get_logger(__name__)

DEFAULT_RETRY = RetryPolicy(max_retries=3, base=1.0, cap=60.0)


def _policy(context: OptionContext, value: Any) -> RetryPolicy:
    if not isinstance(value, RetryPolicy):
        raise ValueError(
            f"{context.task_name}: retry must be a RetryPolicy, not {type(value).__name__}"
        )
    return value


class RetryGuard(Guard):
    """Retries with the task's policy; a delay the broker would not wait for (it reaches the
    visibility timeout, and the job would be delivered again and again) is capped below it,
    with a warning, never dropped."""

    name = "retry"
    options = {"retry": Option(default=DEFAULT_RETRY, check=_policy)}

    def on_error(self, job: Job, exc: Exception) -> Outcome | None:
        reason = getattr(exc, "dead_letter_reason", None)
        if isinstance(reason, str):  # a bug, not a transient failure (a simulator raised, ...)
            return Outcome.dead_letter(reason, error=exc)
        policy: RetryPolicy = job.options["retry"]
        if policy.should_retry(exc, job.attempt):
            delay = self._capped(job, compute_delay(policy, job.attempt))
            log.warning(
                "job failed; retrying",
                error=repr(exc),
                delay=round(delay, 3),
                max_retries=policy.max_retries,
            )
            return Outcome.retry(exc, delay, policy.max_retries)
        reason = "retries_exhausted" if policy.is_retryable(exc) else "non_retryable"
        return Outcome.dead_letter(reason, error=exc)

    @staticmethod
    def _capped(job: Job, delay: float) -> float:
        settings = job.services.settings
        visibility = settings.redelivery_timeout
        if delay < visibility * 0.9:
            return delay
        log.warning(
            f"retry delay capped below the {settings.redelivery_timeout_name}",
            delay=round(delay, 3),
            redelivery_timeout=visibility,
        )
        return visibility * 0.9
