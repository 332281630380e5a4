"""The run record of one job, kept durably with its acknowledgement (db/outbox.py).

A job delivered in this process by the platform's transport (solo and threads pools, Redis
broker holding the coordination keys) hands its record to the delivery: the script that
acknowledges the job pushes it onto the run-record outbox. Any other job (a prefork child,
RabbitMQ, a separate coordination Redis) pushes it itself before it is acknowledged; an eager
call (no worker) and a push Redis refuses go to the recorder's buffer.

A job whose idempotency record could not take its result (the key holds a string: an operator
or a key clash wrote it) is recorded ``failed`` naming the record, and
:class:`~sandbox_platform.guards.events.ResultNotStored` is emitted (an alert); the record is
left as it is and the other jobs go on.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import structlog

from sandbox_platform.broker.ack_riders import Settled
from sandbox_platform.core.context import DELIVERY_HEADER
from sandbox_platform.core.errors import ResultNotStored
from sandbox_platform.core.redaction import redact, redact_value
from sandbox_platform.core.redis_client import REDIS_ERRORS
from sandbox_platform.db.models import JobRun
from sandbox_platform.db.outbox import RunOutbox, encode_row, run_key
from sandbox_platform.guards.base import Job, Outcome, Services
from sandbox_platform.guards.events import JobFinished
from sandbox_platform.guards.events import ResultNotStored as ResultNotStoredEvent

__all__ = ["FINAL_STATES", "RESULT_RECORD_LIMIT", "RUN_STATES", "RunRecords"]

log = structlog.get_logger(__name__)

RUN_STATES = ("succeeded", "failed", "retrying", "deduplicated", "deferred", "dead_lettered")
#: the states that end a job: one record of them per attempt (``run_key``); a deferral or a
#: retry is not one (a retry whose publish failed runs again with the same attempt)
FINAL_STATES = ("succeeded", "failed", "deduplicated", "dead_lettered")
#: results longer than this (JSON) are not copied into the run record
RESULT_RECORD_LIMIT = 4096


def _no_write(_rows: list[dict[str, Any]]) -> None:
    raise RuntimeError("the pipeline's outbox only pushes; workers' recorders drain it")


class RunRecords:
    """Writes the run records of one pipeline (its services' outbox, recorder and events)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._mode = services.settings.mode.value
        self._outbox = RunOutbox(services.redis, services.prefix, self._mode, _no_write)

    def record_when_settled(self, job: Job, outcome: Outcome, correlation_id: str | None) -> None:
        """The run's final record, riding with the job's acknowledgement when it can; failed
        when the job's result could not be stored."""
        pending = job.record_after
        if pending is not None:
            settled = pending.peek()
            if settled is not None and settled.error:  # stored (or not) by its own call
                outcome = self._not_stored(job, correlation_id, settled)
            elif settled is None:  # rides too: the script records it failed if it must
                pending.then(lambda s: self._announce(job, correlation_id, s))
        self.record(job, outcome, correlation_id, ride=True)

    def _announce(self, job: Job, correlation_id: str | None, settled: Settled) -> None:
        if settled.error:
            self._not_stored(job, correlation_id, settled)

    def _not_stored(self, job: Job, correlation_id: str | None, settled: Settled) -> Outcome:
        key = settled.record_key
        self.services.events.emit(
            ResultNotStoredEvent(
                job.name, job.task_id, correlation_id, record_key=key, error=settled.error
            )
        )
        return Outcome.run_failed(
            ResultNotStored(f"result not stored: idempotency record {key!r}: {settled.error}")
        )

    def record(
        self, job: Job, outcome: Outcome, correlation_id: str | None, *, ride: bool = False
    ) -> None:
        """Keep the record of this run (``ride``: with the job's acknowledgement if it can)."""
        elapsed = time.perf_counter() - job.started
        row = self._row(job, outcome, correlation_id, elapsed)
        self._keep(job, row, ride)
        self.services.events.emit(
            JobFinished(job.name, job.task_id, correlation_id, state=outcome.state, seconds=elapsed)
        )

    def _row(
        self, job: Job, outcome: Outcome, correlation_id: str | None, elapsed: float
    ) -> dict[str, Any]:
        result = None
        succeeded = outcome.state == "succeeded" and outcome.value is not None
        if succeeded and len(job.result_json(outcome.value)) <= RESULT_RECORD_LIMIT:
            result = outcome.value
        error = outcome.error if outcome.kind != "done" or outcome.state == "failed" else None
        parent_id, root_id = _lineage(job)
        return {
            "task_id": job.task_id,
            "task_name": job.name,
            "correlation_id": correlation_id,
            "parent_id": parent_id,
            "root_id": root_id,
            "mode": self._mode,
            "state": outcome.state,
            "attempt": job.attempt,
            "started_at": job.started_at,
            "finished_at": datetime.now(UTC),
            "duration_ms": elapsed * 1000,
            "error": redact_value(repr(error)) if error is not None else None,
            "result": redact(_as_record(result)),
            "run_key": run_key(job.task_id, job.attempt, final=outcome.state in FINAL_STATES),
        }

    def _keep(self, job: Job, row: dict[str, Any], ride: bool) -> None:
        recorder = self.services.recorder
        if job.request.is_eager:  # no worker, no acknowledgement
            recorder.add(JobRun, **row)
            return
        tag = job.header(DELIVERY_HEADER) if ride else None
        if tag and self.services.broker.attach_record(tag, self._outbox.key, encode_row(row)):
            return
        try:
            self._outbox.push(row)
        except REDIS_ERRORS as exc:
            log.warning("run record not kept in the outbox; buffered", error=str(exc))
            recorder.add(JobRun, **row)


def _lineage(job: Job) -> tuple[str | None, str | None]:
    """The job's parent and root (Celery's ``parent_id``/``root_id``), as ids or None; a root
    job's own id as its root is kept as None (one way to say "a root")."""
    parent_id = getattr(job.request, "parent_id", None)
    root_id = getattr(job.request, "root_id", None)
    parent = parent_id if isinstance(parent_id, str) and parent_id else None
    root = root_id if isinstance(root_id, str) and root_id and root_id != job.task_id else None
    return parent, root or parent


def _as_record(result: Any) -> dict[str, Any] | None:
    if result is None or isinstance(result, dict):
        return result
    return {"value": result}
