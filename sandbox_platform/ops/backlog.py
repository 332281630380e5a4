"""Queues as an operator sees them: how many jobs wait, how long the oldest has waited, and
an alert when either crosses its threshold.

kombu's Redis transport pushes a message on the left of the queue's list and workers pop on
the right, so the oldest waiting message is the last element; every message the platform
publishes carries its enqueue time in the ``sp_enqueued_at`` header. On a RabbitMQ broker
the length comes from a passive ``queue_declare`` (:mod:`sandbox_platform.ops.amqp_queues`) and
the oldest job's age is not known.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import redis
from celery import Celery

from sandbox_platform.core.broker_kind import BrokerKind
from sandbox_platform.core.context import ENQUEUED_HEADER
from sandbox_platform.core.redis_client import broker_redis
from sandbox_platform.core.settings import Settings
from sandbox_platform.ops.alerts import AlertDispatcher, Severity
from sandbox_platform.ops.amqp_queues import AmqpQueues

__all__ = [
    "QueueSource",
    "QueueStat",
    "broker_queues",
    "check_backlog",
    "default_queue",
    "known_queues",
    "queue_name",
    "queue_stats",
]

# kombu's Redis transport keeps priorities 3, 6 and 9 in lists named queue + sep + step.
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)


@dataclass(frozen=True)
class QueueStat:
    queue: str
    length: int
    oldest_age: float | None  # seconds the oldest waiting job has waited; None: empty/unknown


def _lists(queue: str) -> list[str]:
    return [queue, *(f"{queue}{_PRIORITY_SEP}{step}" for step in _PRIORITY_STEPS)]


def _enqueued_at(raw: bytes | None) -> float | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw).get("headers", {}).get(ENQUEUED_HEADER)
        return float(value) if value is not None else None
    except (ValueError, TypeError, AttributeError):
        return None


#: where queue statistics are read: the broker's Redis, or a RabbitMQ broker
QueueSource = redis.Redis | AmqpQueues


def broker_queues(settings: Settings) -> QueueSource:
    """The source of queue statistics for the broker ``settings`` name."""
    if settings.broker_kind is BrokerKind.RABBITMQ:
        assert settings.broker_url is not None  # a RabbitMQ broker is always set explicitly
        return AmqpQueues(settings.broker_url, timeout=settings.readiness_timeout)
    return broker_redis(settings)


def queue_stats(broker: QueueSource, queue: str) -> QueueStat:
    """Length (over kombu's priority lists) and the oldest job's age, in one round trip."""
    if isinstance(broker, AmqpQueues):
        return QueueStat(queue, broker.length(queue), None)
    names = _lists(queue)
    pipe = broker.pipeline(transaction=False)
    pipe.time()
    for name in names:
        pipe.llen(name)
    for name in names:
        pipe.lindex(name, -1)
    reply = pipe.execute()
    seconds, micros = reply[0]
    now = int(seconds) + int(micros) / 1_000_000
    length = sum(int(n) for n in reply[1 : 1 + len(names)])
    stamps = [s for s in (_enqueued_at(raw) for raw in reply[1 + len(names) :]) if s is not None]
    oldest = max(0.0, now - min(stamps)) if stamps else None
    return QueueStat(queue, length, oldest)


def check_backlog(
    alerts: AlertDispatcher,
    broker: QueueSource,
    queues: Iterable[str],
    *,
    threshold: int,
    max_age: float,
) -> list[QueueStat]:
    """A warning per queue whose backlog or oldest job is over its limit (throttled per queue,
    so every worker may check); return the stats read."""
    stats = [queue_stats(broker, queue) for queue in sorted(set(queues))]
    for stat in stats:
        if stat.length >= threshold:
            alerts.alert(
                Severity.WARNING,
                "queue_backlog",
                f"queue {stat.queue!r} holds {stat.length} jobs (threshold {threshold})",
                key=stat.queue,
                queue=stat.queue,
                length=stat.length,
                threshold=threshold,
            )
        if stat.oldest_age is not None and stat.oldest_age >= max_age:
            alerts.alert(
                Severity.WARNING,
                "queue_stale",
                f"the oldest job in {stat.queue!r} has waited {stat.oldest_age:.0f}s "
                f"(limit {max_age:g}s)",
                key=stat.queue,
                queue=stat.queue,
                oldest_age=round(stat.oldest_age, 1),
                max_age=max_age,
            )
    return stats


def queue_name(app: Celery, name: str) -> str:
    """The name ``app`` really uses for queue ``name`` (qualified with its mode)."""
    return str(app.amqp.queues[name].name)


def default_queue(app: Celery) -> str:
    return queue_name(app, str(app.conf.task_default_queue))


def known_queues(app: Celery) -> list[str]:
    """The queues ``app`` publishes to, by the names it really uses (mode-qualified): its
    default queue, each task's ``queue`` and the queues its ``task_routes`` name."""
    queues = {str(app.conf.task_default_queue)}
    for task in list(app.tasks.values()):
        queue = getattr(task, "queue", None)
        if isinstance(queue, str) and queue:
            queues.add(queue)
    routes = app.conf.task_routes
    if isinstance(routes, dict):
        for route in routes.values():
            if isinstance(route, dict) and isinstance(route.get("queue"), str):
                queues.add(route["queue"])
    return sorted({queue_name(app, name) for name in queues})
