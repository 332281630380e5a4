"""Mode-qualified queues: sandbox and live jobs never share a queue.

Every queue name an app uses (its default queue, ``queue=`` on a task or a call,
``task_routes``, a worker's ``-Q``) is qualified with the app's mode: ``emails`` becomes
``emails.sandbox`` in sandbox mode and ``emails.live`` in live mode, and a name already
qualified with the other mode is re-qualified (a dead letter stored from a sandbox queue and
replayed by a live app goes to the live queue). The routing key is qualified with it, so the
two modes' queues never bind the same key.

It is done where Celery resolves every queue name, its ``Queues`` map: a platform app's
``amqp`` builds a :class:`ModeQueues`. A message of the wrong mode that reaches a queue anyway
(published by hand, or by a 0.1 app to the unqualified queue) is still dead-lettered
``wrong_mode`` by the worker.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from celery.app.amqp import AMQP, Queues
from kombu import Queue

__all__ = ["MODES", "ModeAMQP", "ModeQueues", "base_name", "qualify"]

MODES = ("sandbox", "live")


def base_name(name: str) -> str:
    """``name`` without a mode suffix."""
    for mode in MODES:
        if name.endswith(f".{mode}"):
            return name[: -len(mode) - 1]
    return name


def qualify(name: str, mode: str) -> str:
    """``name`` qualified with ``mode`` (replacing another mode's suffix)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    return f"{base_name(name)}.{mode}"


class ModeQueues(Queues):
    """Celery's queue map, with every name qualified by ``mode``."""

    def __init__(self, *args: Any, mode: str = "sandbox", **kwargs: Any) -> None:
        self.mode = mode
        super().__init__(*args, **kwargs)

    def __getitem__(self, name: str) -> Queue:
        return super().__getitem__(qualify(name, self.mode))

    def __missing__(self, name: str) -> Queue:
        return super().__missing__(qualify(name, self.mode))

    def _add(self, queue: Queue) -> Queue:
        if queue.name != qualify(queue.name, self.mode):
            queue = _qualified_queue(queue, self.mode)
        added: Queue = super()._add(queue)  # type: ignore[misc]  # not in celery-types
        return added

    def deselect(self, exclude: Any) -> None:
        names = [exclude] if isinstance(exclude, str) else list(exclude or [])
        super().deselect([qualify(name, self.mode) for name in names])


def _qualified_queue(queue: Queue, mode: str) -> Queue:
    clone = copy.copy(queue)
    clone.name = qualify(queue.name, mode)
    if queue.routing_key:
        clone.routing_key = qualify(queue.routing_key, mode)
    return clone


class ModeAMQP(AMQP):
    """Celery's AMQP helper, building mode-qualified queue maps (mode from the app's conf,
    read when the app first touches its ``amqp``)."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        mode = str(app.conf.get("sandbox_platform_mode") or "sandbox")
        self.queues_cls = functools.partial(ModeQueues, mode=mode)  # type: ignore[assignment]
