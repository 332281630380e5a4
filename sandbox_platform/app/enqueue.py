"""The one enqueue path of a guarded task, and the strategies it publishes with.

Every enqueue of a guarded task goes through :func:`enqueue_one` (``delay``,
``apply_async``, ``enqueue``, a canvas signature, a child task) or :func:`enqueue_batch`
(``apply_many``, ``delay_many``, ``enqueue_many``). Both run the same steps:

1. every guard's ``at_enqueue`` (checks, headers, an answer from an earlier job), and for a
   batch the guards' ``at_enqueue_batch`` (one round trip for every job);
2. for each job, the strategy :func:`choose_strategy` names (the only place one is chosen):

   - ``existing``: an earlier job of the same idempotency key answers; nothing is published;
   - ``celery``: Celery's ``apply_async`` (and so ``send_task``): the first publish of a route,
     which declares its queue, or options only Celery knows (the direct publisher stands
     aside and Celery publishes);
   - ``direct``: the direct publisher (:class:`~sandbox_platform.broker.publisher.BulkPublisher`)
     builds the message as Celery would, for a route published before: one job with Celery's
     publish retry policy, or each job of a batch inside its kombu publish batch;

3. ``after_publish`` (what the transport answered: the publish-once fold) or, when the
   publish failed, ``at_enqueue_failed`` (a re-submission must publish again).

A job answered by an earlier one (``existing``, a batch's repeats, the publish-once fold's
answer) is a duplicate: :func:`record_duplicates` keeps it (task, idempotency key, the job it
was folded into, the caller's correlation id, the time) on the run-record outbox's sibling
list and counts ``enqueue_deduplicated_total{task}``, in one pipeline: one round trip on the
duplicate path, nothing on the others.

The mode header is stamped where the message is built, by one function
(:func:`~sandbox_platform.core.context.stamp_mode`): Celery's ``send_task``
(``PlatformCelery``) or the direct publisher. docs/architecture.md has the table of entry
points and strategies, the re-publishes of a running job (retries, deferrals) and the
dead-letter replay included.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

import structlog
from celery import Celery, Task
from celery.result import AsyncResult
from kombu.utils.uuid import uuid

from sandbox_platform.app.runtime import runtime_for
from sandbox_platform.broker.publisher import BulkPublisher
from sandbox_platform.broker.transport import ADMIT_OPTION
from sandbox_platform.core.context import (
    CORRELATION_HEADER,
    IDEMPOTENCY_HEADER,
    current_correlation_id,
)
from sandbox_platform.core.jobscope import scope_lineage
from sandbox_platform.core.redis_client import REDIS_ERRORS
from sandbox_platform.db.outbox import duplicate_row, duplicates_key, encode_row
from sandbox_platform.guards.base import EnqueueCall
from sandbox_platform.ops.metrics import DEDUPLICATED, count_in

__all__ = [
    "BATCH_SIZE",
    "Strategy",
    "choose_strategy",
    "enqueue_batch",
    "enqueue_one",
    "publishes_once",
    "record_duplicates",
]

log = structlog.get_logger(__name__)

#: messages buffered before the bulk enqueue's pipeline is sent (then it goes on)
BATCH_SIZE = 1000


class Strategy(StrEnum):
    """How one job of a guarded enqueue is published (see the module)."""

    EXISTING = "existing"
    CELERY = "celery"
    DIRECT = "direct"


def choose_strategy(call: EnqueueCall, existing: str | None) -> Strategy:
    """The strategy for ``call`` once the guards have seen it: ``existing`` is the earlier
    job's id the guards answered with (or None)."""
    if existing is not None:
        return Strategy.EXISTING
    if call.options.get("declare") == []:  # a route published before (_declared_once)
        return Strategy.DIRECT
    return Strategy.CELERY


def enqueue_one(task: Task[Any, Any], call: EnqueueCall) -> AsyncResult[Any]:
    """Enqueue one job (``apply_async``): the guards, one strategy, the guards' answer."""
    pipeline = runtime_for(task.app).pipeline
    call.publish_once = publishes_once(task.app)
    existing = pipeline.enqueue(call)
    declared = _declared_once(task, call.options) if existing is None else _nothing
    strategy = choose_strategy(call, existing)
    if strategy is Strategy.EXISTING:
        record_duplicates(task.app, [call])
        return task.AsyncResult(str(existing))
    try:
        result = None
        if strategy is Strategy.DIRECT:
            _check_arguments(task, [call])
            call.task_id = call.task_id or uuid()
            with task.app.producer_or_acquire() as producer:
                direct = BulkPublisher(task, producer, retry=True)
                result = direct.publish(call.task_id, call.args, call.kwargs, call.options)
        if result is None:  # Celery's, or the direct publisher stood aside
            result = _celery_publish(task, call, call.task_id)
            declared()
    except BaseException:
        pipeline.enqueue_failed([call])
        raise
    existing = pipeline.published(call)
    if existing is None:
        return result
    record_duplicates(task.app, [call])
    return task.AsyncResult(existing)


def enqueue_batch(task: Task[Any, Any], prepared: Sequence[EnqueueCall]) -> list[AsyncResult[Any]]:
    """Enqueue every job of ``prepared`` through one kombu publish batch (a Redis pipeline):
    the guards (each job, then the batch), one strategy per job. When one job's check fails,
    nothing is published."""
    if not prepared:
        return []
    pipeline = runtime_for(task.app).pipeline
    _check_arguments(task, prepared)
    existing = pipeline.enqueue_many(prepared)
    try:
        results = _publish_batch(task, prepared, existing)
    except BaseException:
        # nothing, or only part, was sent: forget the batch's dedupe keys, so a
        # re-submission publishes again (the worker-side claim still runs each key once)
        pipeline.enqueue_failed(prepared)
        raise
    record_duplicates(task.app, [c for c, found in zip(prepared, existing, strict=True) if found])
    return results


def record_duplicates(app: Celery, calls: Sequence[EnqueueCall]) -> None:
    """Keep each of ``calls`` (answered by an earlier job: ``existing_id``) as a duplicate of
    that job, under its correlation id, and count it: one pipeline (the outbox's sibling list,
    drained into ``sp_enqueue_duplicates`` by the workers; the counter's totals). Redis
    refusing it costs the record, never the enqueue (its answer stands)."""
    if not calls:
        return
    runtime = runtime_for(app)
    prefix = runtime.settings.key_prefix
    key = duplicates_key(prefix, runtime.settings.mode.value)
    bound = current_correlation_id()
    pipe = runtime.redis.pipeline(transaction=False)
    counts: dict[str, int] = {}
    for call in calls:
        headers = call.options.get("headers") or {}
        correlation_id = headers.get(CORRELATION_HEADER) or bound
        idempotency_key = str(headers.get(IDEMPOTENCY_HEADER) or "")
        row = duplicate_row(call.task_name, idempotency_key, str(call.existing_id), correlation_id)
        pipe.rpush(key, encode_row(row))
        counts[call.task_name] = counts.get(call.task_name, 0) + 1
    for task_name, amount in counts.items():
        count_in(pipe, prefix, DEDUPLICATED, {"task": task_name}, amount)
    try:
        pipe.execute()
    except REDIS_ERRORS as exc:
        log.warning(
            "duplicate caught at enqueue not recorded", task=calls[0].task_name, error=str(exc)
        )


def _publish_batch(
    task: Task[Any, Any], prepared: Sequence[EnqueueCall], existing: Sequence[str | None]
) -> list[AsyncResult[Any]]:
    results: list[AsyncResult[Any]] = []
    with task.app.producer_or_acquire() as producer, producer.batch(BATCH_SIZE):
        direct = BulkPublisher(task, producer)
        for call, found in zip(prepared, existing, strict=True):
            declared = _declared_once(task, call.options) if found is None else _nothing
            strategy = choose_strategy(call, found)
            if strategy is Strategy.EXISTING:
                results.append(task.AsyncResult(str(found)))
                continue
            task_id = call.task_id or uuid()
            result = None
            if strategy is Strategy.DIRECT:
                result = direct.publish(task_id, call.args, call.kwargs, call.options)
            if result is None:  # Celery's, or the direct publisher stood aside
                result = _celery_publish(task, call, task_id, producer=producer)
                declared()
            results.append(result)
    return results


def _celery_publish(
    task: Task[Any, Any], call: EnqueueCall, task_id: str | None, **extra: Any
) -> AsyncResult[Any]:
    """Celery's own ``apply_async`` (not the guarded task's: the guards have run). Where
    Celery has no current task (an async job's body), the job's scope names the parent."""
    lineage = None if task.app.current_worker_task is not None else scope_lineage()
    if lineage is not None and "parent_id" not in call.options:
        extra = {"root_id": lineage[0], "parent_id": lineage[1], **extra}
    result: AsyncResult[Any] = Task.apply_async(
        task, call.args, call.kwargs, task_id=task_id, **extra, **call.options
    )
    return result


def _check_arguments(task: Task[Any, Any], prepared: Sequence[EnqueueCall]) -> None:
    """Celery's argument check (``typing``), for every job before any is published."""
    check = getattr(task, "__header__", None) if task.typing else None
    if check is not None:
        for call in prepared:
            check(*call.args, **call.kwargs)


def publishes_once(app: Celery) -> bool:
    """True when ``app`` publishes through the platform's transport to the coordination
    Redis: guards may fold their enqueue-side Redis work into the publish."""
    cached: bool | None = app.__dict__.get("_sp_publishes_once")
    if cached is None:
        options = app.conf.broker_transport_options or {}
        cached = app.__dict__["_sp_publishes_once"] = bool(options.get(ADMIT_OPTION))
    return cached


def _declared_once(task: Task[Any, Any], options: dict[str, Any]) -> Callable[[], None]:
    """Declare the job's queue on the first publish of this route only.

    Celery declares the queue before every publish, and kombu's declaration cache still
    copies and binds the queue object each time (~0.1 ms a job). With the platform's Redis
    transport the publish goes straight to the queue's list and declaring changes nothing
    after the first time, so later publishes of the same route pass ``declare=[]``. Returns
    what to call once the publish went through (it remembers the route)."""
    if "declare" in options or not publishes_once(task.app):
        return _nothing
    route = (task.name, options.get("queue"), options.get("exchange"), options.get("routing_key"))
    declared: set[Any] = task.app.__dict__.setdefault("_sp_declared_routes", set())
    try:
        known = route in declared
    except TypeError:  # a queue object that cannot be hashed: let Celery declare it
        return _nothing
    if known:
        options["declare"] = []
        return _nothing
    return lambda: declared.add(route)


def _nothing() -> None:
    return None
