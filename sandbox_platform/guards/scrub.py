"""What leaves a job with secret arguments is masked: the error it raised (its message, the
errors chained to it) and the outcome's detail. Celery logs the error and the result backend
stores it after the job's context has ended, so it is masked in place, while the job's
secret values are still known (:mod:`sandbox_platform.core.secret_mask`)."""

from __future__ import annotations

import contextlib
import dataclasses

from sandbox_platform.core.redaction import redact, redact_value
from sandbox_platform.guards.base import Outcome

__all__ = ["scrub_error", "scrubbed"]


def scrub_error(error: BaseException | None, depth: int = 0) -> None:
    """Mask the running job's secret values in ``error``'s arguments and its chain."""
    if error is None or depth > 8:
        return
    # (an exception type may keep its args read-only)
    with contextlib.suppress(AttributeError, TypeError):
        error.args = tuple(redact(arg) for arg in error.args)
    for linked in (error.__cause__, error.__context__):
        if linked is not error:
            scrub_error(linked, depth + 1)


def scrubbed(outcome: Outcome) -> Outcome:
    """``outcome`` with its error masked in place and its detail masked."""
    scrub_error(outcome.error)
    if outcome.detail:
        return dataclasses.replace(outcome, detail=redact_value(outcome.detail))
    return outcome
