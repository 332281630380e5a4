"""The idempotency guard: a job submitted or delivered twice has its effect once.

Options: ``idempotency_key`` (a template over the task's arguments), ``idempotency_ttl`` and
``idempotency_lease`` (seconds), ``dedupe`` (enqueue-side: the same key returns the first job's
id instead of publishing again; the same key with other arguments raises
IdempotencyConflict at the call site).

In the worker the claim joins the one admission round trip: ``done`` returns the stored
result, ``in_flight`` re-queues the message until the holder's lease ends, ``conflict``
dead-letters the job; after the run the result is stored (success) or the claim released.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import redis
import structlog

from sandbox_platform.core.context import IDEMPOTENCY_HEADER
from sandbox_platform.core.errors import EnqueueError, IdempotencyConflict
from sandbox_platform.guards.admission import Admission, AdmissionRequest
from sandbox_platform.guards.base import (
    EnqueueCall,
    Guard,
    Job,
    Option,
    OptionContext,
    Outcome,
    Services,
)
from sandbox_platform.guards.governor import resolve_resource
from sandbox_platform.guards.idempotency import IdempotencyStore, fingerprint
from sandbox_platform.guards.templates import check_template

__all__ = ["IdempotencyGuard", "enqueue_key"]

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


def enqueue_key(prefix: str, key: str) -> str:
    """The Redis key that remembers the first job published under idempotency ``key``."""
    return f"{prefix}:enq:{{{key}}}"


class IdempotencyGuard(Guard):
    name = "idempotency"
    order = 40
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
        if options["dedupe"]:
            call.existing_id = _first_job_for(call, key, options["idempotency_ttl"])

    # -- run ------------------------------------------------------------------------------

    def contribute(self, job: Job, request: AdmissionRequest) -> None:
        options = job.options
        key = job.header(IDEMPOTENCY_HEADER) or _resolve_key(
            job.name, options.get("idempotency_key"), job.args, job.kwargs, job.task.sp_argnames
        )
        if key is None:
            return
        job.idempotency_key = key
        job.headers[IDEMPOTENCY_HEADER] = key
        request.claim(
            key,
            fingerprint(list(job.args), job.kwargs),
            lease=options["idempotency_lease"],
            ttl=options["idempotency_ttl"],
        )

    def admitted(self, job: Job, admission: Admission) -> Outcome | None:
        key = job.idempotency_key
        if key is None or admission.status == "denied":
            return None
        if admission.status == "acquired":
            job.fencing_token = admission.token
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
            if not self.store.complete(key, token, job.result_json(outcome.value)):
                log.warning("idempotency lease lost before completion", key=key)
            return
        try:
            self.store.release(key, token)
        except Exception:
            log.exception("could not release idempotency claim", key=key)


def _first_job_for(call: EnqueueCall, key: str, ttl: float) -> str | None:
    """Enqueue-side dedupe: the id of the first job published under ``key``, if not this one.

    The same key with other arguments raises IdempotencyConflict at the call site.
    """
    client = call.services.redis
    redis_key = enqueue_key(call.services.prefix, key)
    args_fingerprint = fingerprint(list(call.args), call.kwargs)
    mine = f"{call.task_id} {args_fingerprint}"
    try:
        if client.set(redis_key, mine, nx=True, ex=max(1, int(ttl))):
            return None  # the first publication under this key: one round trip
        existing = client.get(redis_key)
    except redis.RedisError as exc:
        raise EnqueueError(
            f"{call.task_name}: Redis unreachable for enqueue dedupe: {exc}"
        ) from None
    if existing is None:
        return None  # expired in between: this one is the first now
    text = existing.decode() if isinstance(existing, bytes) else str(existing)
    first_id, _, first_fingerprint = text.partition(" ")
    if first_fingerprint != args_fingerprint:
        raise IdempotencyConflict(
            f"{call.task_name}: idempotency key {key!r} was used before with different arguments"
        )
    return None if first_id == call.task_id else first_id
