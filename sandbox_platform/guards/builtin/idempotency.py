"""The idempotency guard: a job submitted or delivered twice has its effect once.

Options: ``idempotency_key`` (a template over the task's arguments), ``idempotency_ttl`` and
``idempotency_lease`` (seconds), ``dedupe`` (enqueue-side: the same key returns the first job's
id instead of publishing again; the same key with other arguments raises
IdempotencyConflict at the call site).

In the worker the claim joins the one admission round trip: ``done`` returns the stored
result, ``in_flight`` re-queues the message until the holder's lease ends, ``conflict``
dead-letters the job; after the run the result is stored (success) or the claim released.
The result rides with the job's acknowledgement when the transport can carry it (one round
trip for both: broker/ack_riders.py), else it is stored with its own call.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
import structlog

from sandbox_platform.broker.ack_riders import Completion
from sandbox_platform.broker.publish_once import PUBLISH_ONCE_HEADER, PublishAnswer
from sandbox_platform.coordination.admission import Admission, AdmissionRequest
from sandbox_platform.coordination.enqueue_marks import enqueue_key, forget_marks, mark_first_jobs
from sandbox_platform.coordination.governor import resolve_resource
from sandbox_platform.coordination.idempotency import (
    IdempotencyStore,
    fingerprint,
)
from sandbox_platform.core.context import DELIVERY_HEADER, IDEMPOTENCY_HEADER
from sandbox_platform.core.errors import EnqueueError, IdempotencyConflict
from sandbox_platform.core.redis_client import REDIS_ERRORS
from sandbox_platform.guards.base import (
    EnqueueCall,
    Guard,
    Job,
    Option,
    OptionContext,
    Outcome,
    Services,
)
from sandbox_platform.guards.shortcuts import EnqueueShortcuts
from sandbox_platform.guards.state import FingerprintArguments, GuardState, IdempotencyClaim
from sandbox_platform.guards.templates import check_template

__all__ = ["IdempotencyGuard"]

log = structlog.get_logger(__name__)


def _key_template(context: OptionContext, value: Any) -> str | None:
    return None if value is None else check_template(context, "idempotency_key", value)


def _seconds(option: str, default: float) -> Option:
    def check(context: OptionContext, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"{context.task_name}: {option} must be a number of seconds > 0")
        return float(value)

    return Option(default=default, check=check)


def _resolve_key(
    task_name: str, template: str | None, args: Sequence[Any], kwargs: Any, argnames: Sequence[str]
) -> str | None:
    if template is None:
        return None
    return f"{task_name}:{resolve_resource(template, args, kwargs, argnames)}"


class IdempotencyGuard(EnqueueShortcuts, Guard):
    name = "idempotency"
    plans_at_enqueue = True
    options = {
        "idempotency_key": Option(default=None, check=_key_template),
        "idempotency_ttl": _seconds("idempotency_ttl", 24 * 3600.0),
        "idempotency_lease": _seconds("idempotency_lease", 300.0),
        "dedupe": Option(default=True, check=lambda _c, value: bool(value)),
    }

    def __init__(self, store: IdempotencyStore | None = None) -> None:
        self.store = store

    def bind(self, services: Services) -> IdempotencyGuard:
        return IdempotencyGuard(IdempotencyStore(services.redis, services.prefix))

    # -- enqueue --------------------------------------------------------------------------

    def at_enqueue(self, call: EnqueueCall) -> None:
        options = call.task_options
        key = call.options.pop("idempotency_key", None) or _resolve_key(
            call.task_name, options.get("idempotency_key"), call.args, call.kwargs, call.argnames
        )
        if key is None:
            return
        call.add_header(IDEMPOTENCY_HEADER, key)
        call.task_id = call.task_id or str(uuid.uuid4())
        if not options["dedupe"]:
            return
        if call.batched:  # one round trip for the whole batch: at_enqueue_batch
            call.state.put(_Pending(key, options["idempotency_ttl"]))
            return
        if call.publish_once:  # no round trip of its own: folded into the publish
            _fold_into_publish(call, key, options["idempotency_ttl"])
            return
        call.existing_id = _first_job_for(call, key, options["idempotency_ttl"])

    def after_publish(self, call: EnqueueCall) -> None:
        folded = call.state.get(_Folded)
        if folded is None or call.task_id is None:
            return
        held = folded.answer.held
        if held is None:
            return  # the transport gave no answer: it published the message as it was
        key, mine = folded.key, folded.value
        if not held or held == mine:
            call.state.put(_Marked(enqueue_key(call.services.prefix, key), mine))
            return  # this publish set the key (or an earlier try of it did) and pushed
        call.existing_id = _existing_or_conflict(call, key, held, mine.partition(" ")[2])

    def at_enqueue_batch(self, calls: Sequence[EnqueueCall]) -> None:
        pending = [call for call in calls if _Pending in call.state]
        if pending:
            _first_jobs_for(pending)

    def at_enqueue_failed(self, calls: Sequence[EnqueueCall]) -> None:
        marked = [mark for call in calls if (mark := call.state.get(_Marked)) is not None]
        if marked:
            keys = [mark.record_key for mark in marked]
            forget_marks(calls[0].services.redis, keys, [mark.value for mark in marked])

    # -- run ------------------------------------------------------------------------------

    def contribute(self, job: Job, request: AdmissionRequest) -> None:
        options = job.options
        key = job.header(IDEMPOTENCY_HEADER) or _resolve_key(
            job.name, options.get("idempotency_key"), job.args, job.kwargs, job.task.sp_argnames
        )
        if key is None:
            return
        job.state.put(IdempotencyClaim(key))
        job.headers[IDEMPOTENCY_HEADER] = key
        request.claim(
            key,
            _fingerprint_of(job.state, job.args, job.kwargs),
            lease=options["idempotency_lease"],
            ttl=options["idempotency_ttl"],
        )

    def admitted(self, job: Job, admission: Admission) -> Outcome | None:
        key = job.idempotency_key
        if key is None or admission.status in ("denied", "refused"):
            return None  # nothing was claimed
        if admission.status == "acquired":
            job.state.put(IdempotencyClaim(key, admission.token))
            return None
        if admission.status == "done":
            log.info("idempotent job already done; stored result returned", key=key)
            return Outcome.deduplicated(admission.value())
        if admission.status == "conflict":
            conflict = IdempotencyConflict(
                f"idempotency key {key!r} was used before with different arguments"
            )
            return Outcome.dead_letter("idempotency_conflict", error=conflict)
        outcome = Outcome.defer(admission.wait_seconds)
        log.info(
            "idempotency key in flight elsewhere; job re-queued", key=key, wait=outcome.countdown
        )
        return outcome

    def after_run(self, job: Job, outcome: Outcome) -> None:
        key, token = job.idempotency_key, job.fencing_token
        if key is None or token is None or self.store is None:
            return
        if outcome.state == "succeeded":
            self._complete(job, key, token, job.result_json(outcome.value))
            return
        try:
            self.store.release(key, token)
        except Exception:
            log.exception("could not release idempotency claim", key=key)

    def _complete(self, job: Job, key: str, token: int, result: str) -> None:
        """Store the job's result in its record: with its acknowledgement when it can ride
        (the run record waits for it), else now. A record that cannot take it fails this job's
        run record only (guards/run_records.py)."""
        assert self.store is not None
        completion = Completion(self.store.keys(key).record, token, result)
        if job.services.broker.attach(job.header(DELIVERY_HEADER), completion):
            job.record_after = completion.settlement
            return
        try:
            stored = self.store.complete(key, token, result)
        except redis.ResponseError as exc:  # the key holds another type: left as it is
            job.record_after = completion.settlement
            completion.settle(f"broken: {exc}")
            log.error("idempotency result not stored", key=key, error=str(exc))
            return
        if not stored:
            log.warning("idempotency lease lost before completion", key=key)


@dataclass(frozen=True)
class _Fingerprint:
    """The fingerprint of the call's arguments (worked out once per job or call)."""

    value: str


@dataclass(frozen=True)
class _Pending:
    """A key to mark at enqueue: for a batch, all at once by ``at_enqueue_batch``."""

    key: str
    ttl: float


@dataclass(frozen=True)
class _Marked:
    """The mark this enqueue wrote (taken back if the publish fails)."""

    record_key: str
    value: str


@dataclass(frozen=True)
class _Folded:
    """The key whose dedupe was folded into the publish, and the mark it asked for."""

    key: str
    value: str
    answer: PublishAnswer


def _fingerprint_of(state: GuardState, args: Sequence[Any], kwargs: Any) -> str:
    """The arguments' fingerprint, kept in ``state`` (the enqueue's admission plan and the
    dedupe use the same one)."""
    found = state.get(_Fingerprint)
    if found is None:
        view = state.get(FingerprintArguments)  # secret arguments: their HMACs
        if view is not None:
            args, kwargs = view.make()
        found = _Fingerprint(fingerprint(list(args), kwargs))
        state.put(found)
    return found.value


def _fold_into_publish(call: EnqueueCall, key: str, ttl: float) -> None:
    """Let the transport mark the first job and push the message in one call."""
    value = f"{call.task_id} {_fingerprint_of(call.state, call.args, call.kwargs)}"
    redis_key = enqueue_key(call.services.prefix, key)
    answer = PublishAnswer()  # the transport writes what the record held into it
    call.add_header(PUBLISH_ONCE_HEADER, [redis_key, value, max(1, int(ttl)), answer])
    call.state.put(_Folded(key, value, answer))


def _existing_or_conflict(call: EnqueueCall, key: str, held: str, args_fingerprint: str) -> str:
    """The first job's id from what its record holds; another fingerprint: conflict."""
    first_id, _, first_fingerprint = held.partition(" ")
    if first_fingerprint != args_fingerprint:
        raise IdempotencyConflict(
            f"{call.task_name}: idempotency key {key!r} was used before with different arguments"
        )
    return first_id


def _first_jobs_for(calls: Sequence[EnqueueCall]) -> None:
    """Enqueue-side dedupe of a bulk enqueue in one round trip (``enq_dedupe.lua``): each
    call's ``existing_id`` is set; a key used with other arguments (before, or twice in the
    batch) raises IdempotencyConflict and nothing is written."""
    services = calls[0].services
    keys: list[str] = []
    args: list[str | int] = []
    seen: dict[str, str] = {}
    pending = [_pending(call) for call in calls]
    for call, (key, ttl) in zip(calls, pending, strict=True):
        args_fingerprint = _fingerprint_of(call.state, call.args, call.kwargs)
        if seen.setdefault(key, args_fingerprint) != args_fingerprint:
            raise IdempotencyConflict(
                f"{call.task_name}: idempotency key {key!r} is used twice in the batch "
                "with different arguments"
            )
        keys.append(enqueue_key(services.prefix, key))
        args += [f"{call.task_id} {args_fingerprint}", max(1, int(ttl))]
    try:
        reply = mark_first_jobs(services.redis, keys, args)
    except REDIS_ERRORS as exc:
        raise EnqueueError(
            f"{calls[0].task_name}: Redis unreachable for enqueue dedupe: {exc}"
        ) from None
    if _text(reply[0]) == "conflict":
        index = int(reply[1]) - 1
        raise IdempotencyConflict(
            f"{calls[index].task_name}: idempotency key {pending[index][0]!r} "
            "was used before with different arguments"
        )
    for call, redis_key, mine, held in zip(calls, keys, args[::2], reply[1:], strict=True):
        first_id = _text(held).partition(" ")[0]
        if not first_id:
            call.state.put(_Marked(redis_key, str(mine)))
        call.existing_id = first_id if first_id and first_id != call.task_id else None


def _pending(call: EnqueueCall) -> tuple[str, float]:
    pending = call.state.get(_Pending)
    assert pending is not None, "at_enqueue left no key to mark"
    return pending.key, pending.ttl


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _first_job_for(call: EnqueueCall, key: str, ttl: float) -> str | None:
    """Enqueue-side dedupe: the id of the first job published under ``key``, if not this one
    (one round trip: ``enq_dedupe.lua`` for one call).

    The same key with other arguments raises IdempotencyConflict at the call site.
    """
    call.state.put(_Pending(key, ttl))
    _first_jobs_for([call])
    return call.existing_id
