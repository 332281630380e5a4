"""Queue backlog and stale-queue alerts, read from real messages waiting in Redis."""

from __future__ import annotations

import pytest
from celery import Celery

from sandbox_platform.core.redis_client import broker_redis
from sandbox_platform.ops.alerts import AlertDispatcher, MemorySink
from sandbox_platform.ops.amqp_queues import AmqpQueues
from sandbox_platform.ops.backlog import broker_queues, check_backlog, known_queues, queue_stats
from sandbox_platform.tasks import guarded_task
from tests.helpers import wait_until

QUEUE = "backlog-test.sandbox"  # the name the platform app really uses


def test_backlog_and_age_of_the_oldest_waiting_job(platform_app: Celery) -> None:
    broker = broker_redis(platform_app.platform_settings)  # type: ignore[attr-defined]
    assert queue_stats(broker, QUEUE).length == 0
    for n in range(5):  # nobody consumes this queue
        platform_app.send_task("backlog.nobody", args=[n], queue=QUEUE)
    sink = MemorySink()
    alerts = AlertDispatcher()
    alerts.subscribe(sink)

    stats = check_backlog(alerts, broker, [QUEUE], threshold=3, max_age=3600)
    assert [(s.queue, s.length) for s in stats] == [(QUEUE, 5)]
    assert stats[0].oldest_age is not None and stats[0].oldest_age < 60
    assert [a.kind for a in sink.recent(10)] == ["queue_backlog"]

    wait_until(lambda: (queue_stats(broker, QUEUE).oldest_age or 0) >= 1.0, timeout=10)
    check_backlog(alerts, broker, [QUEUE], threshold=1000, max_age=1.0)
    stale = [a for a in sink.recent(10) if a.kind == "queue_stale"]
    assert len(stale) == 1 and stale[0].context["queue"] == QUEUE

    check_backlog(alerts, broker, [QUEUE], threshold=3, max_age=1.0)  # throttled per queue
    assert len(sink.recent(10)) == 2


@pytest.mark.parametrize("broker", ["rabbitmq"], indirect=True)
def test_rabbitmq_backlog_from_a_passive_declare(platform_app: Celery, broker) -> None:  # type: ignore[no-untyped-def]
    source = broker_queues(platform_app.platform_settings)  # type: ignore[attr-defined]
    assert isinstance(source, AmqpQueues)
    try:
        assert queue_stats(source, QUEUE).length == 0  # not declared yet: nothing waits
        for n in range(5):  # nobody consumes this queue
            platform_app.send_task("backlog.nobody", args=[n], queue=QUEUE)
        sink = MemorySink()
        alerts = AlertDispatcher()
        alerts.subscribe(sink)

        stats = check_backlog(alerts, source, [QUEUE], threshold=3, max_age=0.001)
        assert [(s.queue, s.length, s.oldest_age) for s in stats] == [(QUEUE, 5, None)]
        assert [a.kind for a in sink.recent(10)] == ["queue_backlog"]  # age unknown: no stale
    finally:
        broker.delete_queues((QUEUE,))


def test_known_queues_include_task_queues_and_routes(platform_app: Celery) -> None:
    @guarded_task(platform_app, name="backlog.slow", queue="slow-lane")
    def slow() -> None: ...

    platform_app.conf.task_routes = {"backlog.routed": {"queue": "routed-lane"}}
    assert known_queues(platform_app) == [
        "routed-lane.sandbox",
        "sandbox_platform.sandbox",
        "slow-lane.sandbox",
    ]
