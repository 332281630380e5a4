"""The run record of one job: written when its outcome is known, or, when the job's result
rides with its acknowledgement (``core/ack_riders.py``), once that result is settled.

A job whose idempotency record could not take its result (the key holds a string: an operator
or a key clash wrote it) is recorded ``failed`` with the record's key, and
:class:`~sandbox_platform.guards.events.ResultNotStored` is emitted (an alert); the record is
left as it is and the other jobs go on.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from sandbox_platform.core.ack_riders import Settled
from sandbox_platform.core.errors import ResultNotStored
from sandbox_platform.core.redaction import redact, redact_value
from sandbox_platform.db.models import JobRun
from sandbox_platform.guards.base import Job, Outcome, Services
from sandbox_platform.guards.events import JobFinished
from sandbox_platform.guards.events import ResultNotStored as ResultNotStoredEvent

__all__ = ["RESULT_RECORD_LIMIT", "RUN_STATES", "RunRecords"]

RUN_STATES = ("succeeded", "failed", "retrying", "deduplicated", "deferred", "dead_lettered")
#: results longer than this (JSON) are not copied into the run record
RESULT_RECORD_LIMIT = 4096


class RunRecords:
    """Writes the run records of one pipeline (its services' recorder and events)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._mode = services.settings.mode.value

    def record_when_settled(self, job: Job, outcome: Outcome, correlation_id: str | None) -> None:
        """Record the run now, or once ``job.record_after`` settles."""
        if job.record_after is None:
            self.record(job, outcome, correlation_id)
            return
        job.record_after.then(lambda settled: self._settled(job, outcome, correlation_id, settled))

    def _settled(
        self, job: Job, outcome: Outcome, correlation_id: str | None, settled: Settled
    ) -> None:
        if settled.error:
            key = settled.record_key
            outcome = Outcome.run_failed(
                ResultNotStored(f"result not stored: idempotency record {key!r}: {settled.error}")
            )
            self.services.events.emit(
                ResultNotStoredEvent(
                    job.name, job.task_id, correlation_id, record_key=key, error=settled.error
                )
            )
        self.record(job, outcome, correlation_id)

    def record(self, job: Job, outcome: Outcome, correlation_id: str | None) -> None:
        elapsed = time.perf_counter() - job.started
        result = None
        succeeded = outcome.state == "succeeded" and outcome.value is not None
        if succeeded and len(job.result_json(outcome.value)) <= RESULT_RECORD_LIMIT:
            result = outcome.value
        error = outcome.error if outcome.kind != "done" or outcome.state == "failed" else None
        self.services.recorder.add(
            JobRun,
            task_id=job.task_id,
            task_name=job.name,
            correlation_id=correlation_id,
            mode=self._mode,
            state=outcome.state,
            attempt=job.attempt,
            started_at=job.started_at,
            finished_at=datetime.now(UTC),
            duration_ms=elapsed * 1000,
            error=redact_value(repr(error)) if error is not None else None,
            result=redact(_as_record(result)),
        )
        self.services.events.emit(
            JobFinished(
                job.name,
                job.task_id,
                correlation_id,
                state=outcome.state,
                seconds=elapsed,
            )
        )


def _as_record(result: Any) -> dict[str, Any] | None:
    if result is None or isinstance(result, dict):
        return result
    return {"value": result}
