"""Direct publish: jobs of one task published without Celery's per-call ``send_task``, routed
once — many through one Redis pipeline (bulk enqueue), or one (``apply_async``).

Celery's ``send_task`` does per call what a batch of one task needs once: merge the task's
execution options, route, look up configuration, set up the producer and its retry wrapper
(about two thirds of a bulk enqueue's time). :class:`BulkPublisher` does those once per
batch and then, per job, what ``send_task`` does for it: Celery's own protocol-2 message
(``amqp.as_task_v2``: the same headers, parent and root ids, countdown as ETA), the
``before_task_publish`` and ``after_task_publish`` signals, the result backend's
``on_task_call``, the parent task's trail, and kombu's ``Producer.publish`` into the batch.

It is taken only where it is the same message Celery would send: the platform's Redis
transport, a direct exchange, a route published once already, and call options it knows
(:data:`FAST_OPTIONS`). Anything else — a custom router, another exchange type, ``link``,
sent events, eager mode, pydantic arguments — goes through Celery's ``apply_async``, as
before. A single job (``retry=True``) is published with Celery's publish retry policy
(``task_publish_retry``, ``task_publish_retry_policy``); a batch is not retried (it is sent
as one pipeline, all or nothing).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from typing import Any

from celery import Task, signals
from celery.result import AsyncResult
from kombu import Producer

from sandbox_platform.core.context import stamp_mode
from sandbox_platform.core.jobscope import scope_lineage

__all__ = ["FAST_OPTIONS", "BulkPublisher"]

#: call options the direct path handles; any other sends the job through ``apply_async``
FAST_OPTIONS = frozenset(
    {"countdown", "eta", "expires", "queue", "priority", "headers", "declare", "ignore_result"}
)
_EXEC_KEYS = ("queue", "priority", "expires", "time_limit", "soft_time_limit")


class BulkPublisher:
    """Publishes the jobs of one bulk enqueue of ``task`` with ``producer`` (in its batch)."""

    def __init__(self, task: Task[Any, Any], producer: Producer, *, retry: bool = False) -> None:
        self.task = task
        self.app = task.app
        self.producer = producer
        self._retry = bool(retry and self.app.conf.task_publish_retry)
        self._retry_policy = dict(self.app.conf.task_publish_retry_policy or {}) if retry else {}
        self._route: tuple[str, int] | None = None
        self._routed_for: object = _UNSET
        self._parent = parent = self.app.current_worker_task
        self._root_id = self._parent_id = None
        if parent is not None:
            self._root_id = parent.request.root_id or parent.request.id
            self._parent_id = parent.request.id
        elif (lineage := scope_lineage()) is not None:  # an async job's body
            self._root_id, self._parent_id = lineage
        self._shadow_name: Callable[..., Any] = task.shadow_name
        exec_options: Mapping[str, Any] = getattr(task, "_get_exec_options")()  # noqa: B009
        self._defaults = {k: exec_options[k] for k in _EXEC_KEYS if exec_options.get(k)}
        self.enabled = self._can_publish_directly()

    def _can_publish_directly(self) -> bool:
        return not (
            self.app.conf.task_always_eager  # (runs in the caller: apply_async knows how)
            or self.app.conf.task_send_sent_event
            or signals.task_sent.receivers
            or getattr(self.app.amqp.router, "routes", None)  # custom routes may read arguments
            or getattr(self.task, "_dump_pydantic_arguments", None) is not None
        )

    def publish(
        self,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: Mapping[str, Any],
    ) -> AsyncResult[Any] | None:
        """Publish one job; None when its options need ``apply_async`` (nothing was sent)."""
        if not self.enabled or not FAST_OPTIONS.issuperset(options):
            return None
        merged = {**self._defaults, **options}
        route = self._route_for(merged)
        expires = merged.get("expires")
        if route is None or not (expires is None or isinstance(expires, numbers.Real)):
            return None
        self._send(task_id, args, kwargs, merged, route)
        result: AsyncResult[Any] = self.task.AsyncResult(task_id)
        if self._parent is not None:
            self._parent.add_trail(result)
        return result

    def _route_for(self, options: Mapping[str, Any]) -> tuple[str, int] | None:
        """(queue name, delivery mode) for these options: routed once per distinct queue."""
        queue = options.get("queue")
        if self._routed_for is not queue:
            self._route = self._route_of(queue)
            self._routed_for = queue
        return self._route

    def _route_of(self, queue_option: Any) -> tuple[str, int] | None:
        amqp = self.app.amqp
        route: Callable[..., Mapping[str, Any]] = amqp.router.route
        routed = route(
            {"queue": queue_option} if queue_option else {}, self.task.name, (), {}, self.task
        )
        queue = routed.get("queue") or amqp.default_queue
        if isinstance(queue, str):
            queue = amqp.queues[queue]
        if routed.get("exchange") or routed.get("routing_key"):
            return None
        exchange = queue.exchange
        if (exchange.type or "direct") != "direct":
            return None
        return str(queue.name), int(exchange.delivery_mode or 2)

    def _message(
        self, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any], Any]:
        """Celery's protocol-2 message for one job: (headers, properties, body)."""
        task = self.task
        headers, properties, body, _ = self.app.amqp.as_task_v2(
            task_id,
            task.name,
            args,
            kwargs,
            countdown=options.get("countdown"),
            eta=options.get("eta"),
            expires=options.get("expires"),
            time_limit=options.get("time_limit"),
            soft_time_limit=options.get("soft_time_limit"),
            reply_to=self.app.thread_oid,
            root_id=self._root_id,
            parent_id=self._parent_id,
            shadow=self._shadow_name(args, kwargs, options),
            ignore_result=options["ignore_result"],
            # the platform's before_task_publish receiver writes the (redacted) reprs
            argsrepr="",
            kwargsrepr="",
        )
        headers.update(options.get("headers") or {})
        settings = getattr(self.app, "platform_settings", None)
        if settings is not None:  # as PlatformCelery.send_task: this app's mode
            stamp_mode(headers, settings.mode.value)
        return headers, properties, body

    def _send(
        self,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: dict[str, Any],
        route: tuple[str, int],
    ) -> None:
        """What ``send_task`` and ``send_task_message`` do for one job, in their order."""
        name = self.task.name
        options.setdefault("ignore_result", self.task.ignore_result)
        headers, properties, body = self._message(task_id, args, kwargs, options)
        queue, delivery_mode = route
        signals.before_task_publish.send(
            sender=name,
            body=body,
            exchange="",
            routing_key=queue,
            declare=[],
            headers=headers,
            properties=properties,
            retry_policy=self._retry_policy,
        )
        if not options["ignore_result"]:
            self.task.backend.on_task_call(self.producer, task_id)
        self.producer.publish(
            body,
            exchange="",
            routing_key=queue,
            serializer="json",
            retry=self._retry,
            retry_policy=self._retry_policy,
            delivery_mode=delivery_mode,
            declare=[],
            headers=headers,
            **_publish_extras(options),
            **properties,
        )
        signals.after_task_publish.send(
            sender=name, body=body, headers=headers, exchange="", routing_key=queue
        )


def _publish_extras(options: Mapping[str, Any]) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if options.get("priority") is not None:
        extra["priority"] = options["priority"]
    if options.get("expires") is not None:
        extra["expiration"] = max(float(options["expires"]), 0.0)
    return extra


_UNSET = object()
