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

from celery import Celery, Task
from celery.result import AsyncResult
from kombu.utils.uuid import uuid

from sandbox_platform.app.runtime import runtime_for
from sandbox_platform.broker.publisher import BulkPublisher
from sandbox_platform.broker.transport import ADMIT_OPTION
from sandbox_platform.core.jobscope import scope_lineage
from sandbox_platform.guards.base import EnqueueCall

__all__ = [
    "BATCH_SIZE",
    "Strategy",
    "choose_strategy",
    "enqueue_batch",
    "enqueue_one",
    "publishes_once",
]

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
    return result if existing is None else task.AsyncResult(existing)


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
        return _publish_batch(task, prepared, existing)
    except BaseException:
        # nothing, or only part, was sent: forget the batch's dedupe keys, so a
        # re-submission publishes again (the worker-side claim still runs each key once)
        pipeline.enqueue_failed(prepared)
        raise


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
