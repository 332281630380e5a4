"""Regression (issue 10.1): one malformed message stopped all processing. Now every kind of
message a worker cannot run is dead-lettered (raw bytes safely encoded) and the worker keeps
consuming, the same process, no restart."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import DeadLetter
from tests.fault_tasks import register_faults
from tests.faults import kombu_envelope
from tests.helpers import wait_until

pytestmark = pytest.mark.slow
QUEUE = "sandbox_platform.sandbox"


def _letters(url: str) -> list[DeadLetter]:
    with session_scope(url) as session:
        return list(session.scalars(select(DeadLetter).order_by(DeadLetter.id)))


def test_malformed_messages_are_dead_lettered_and_the_worker_goes_on(
    platform_app, worker_factory, redis_client, sqlite_url
) -> None:
    tasks = register_faults(platform_app)
    worker = worker_factory(platform_app, "tests.faults_app")
    pid = worker.pid
    redis_client.lpush(QUEUE, kombu_envelope({"not": "a list"}))  # JSON, not [args, kwargs, embed]
    redis_client.lpush(QUEUE, b"\xff\xfe raw bytes, not a message")  # not even JSON
    redis_client.lpush(QUEUE, kombu_envelope(raw_body=b"\xff\x00 not utf-8"))  # body undecodable
    redis_client.lpush(QUEUE, kombu_envelope({"x": 1}, task=None))  # no Celery envelope at all
    redis_client.lpush(QUEUE, kombu_envelope([["only-the-key"], {}, {}]))  # an argument missing
    tasks.record.delay("after-the-bad-ones", "ok")

    wait_until(lambda: redis_client.lrange("after-the-bad-ones", 0, -1) == [b"ok"], timeout=60)
    letters = wait_until(lambda: (found := _letters(sqlite_url)) and len(found) >= 5 and found)
    assert sorted(letter.reason for letter in letters) == [
        "invalid_arguments",
        "malformed",
        "rejected",
        "undecodable",
        "undecodable",
    ]
    raw = next(letter for letter in letters if letter.message.get("queue") == QUEUE)
    assert raw.message["body_base64"]  # the raw bytes, safely encoded, kept
    assert worker.alive() and worker.pid == pid  # the same consumer, never restarted
    assert "Unrecoverable" not in worker.log_text()


def _amqp_publish(url: str, body: bytes, headers: dict[str, object]) -> None:
    """Publish raw bytes onto the queue as any AMQP client could (no Celery involved)."""
    from kombu import Connection

    with Connection(url, connect_timeout=10) as conn:
        conn.Producer().publish(
            body,
            exchange="",
            routing_key=QUEUE,
            content_type="application/json",
            content_encoding="utf-8",
            headers=headers,
            delivery_mode=2,
        )


def _celery_headers(task: str = "faults.record") -> dict[str, object]:
    import uuid

    task_id = str(uuid.uuid4())
    return {"lang": "py", "task": task, "id": task_id, "root_id": task_id, "sp_mode": "sandbox"}


@pytest.mark.parametrize("broker", ["rabbitmq"], indirect=True)
def test_malformed_amqp_messages_are_dead_lettered_and_the_worker_goes_on(
    platform_app, worker_factory, redis_client, sqlite_url, broker
) -> None:
    """The same on RabbitMQ: AMQP frames every message, so "raw bytes in a list" becomes a
    body that is not JSON; the rest are published as they would be on Redis."""
    tasks = register_faults(platform_app)
    worker = worker_factory(platform_app, "tests.faults_app")
    pid = worker.pid
    url = str(broker.amqp_url)
    _amqp_publish(url, b'{"not": "a list"}', _celery_headers())  # JSON, not [args, kwargs, embed]
    _amqp_publish(url, b"\xff\xfe raw bytes, not JSON", {})  # no envelope, body undecodable
    _amqp_publish(url, b"\xff\x00 not utf-8", _celery_headers())  # a task, body undecodable
    _amqp_publish(url, b'{"x": 1}', {})  # no Celery envelope at all
    _amqp_publish(url, b'[["only-the-key"], {}, {}]', _celery_headers())  # an argument missing
    _amqp_publish(url, b'[["k", "v"], {}, {}]', _celery_headers("faults.no_such_task"))
    tasks.record.delay("after-the-bad-ones", "ok")

    wait_until(lambda: redis_client.lrange("after-the-bad-ones", 0, -1) == [b"ok"], timeout=60)
    letters = wait_until(lambda: (found := _letters(sqlite_url)) and len(found) >= 6 and found)
    assert sorted(letter.reason for letter in letters) == [
        "invalid_arguments",
        "malformed",
        "rejected",
        "undecodable",
        "undecodable",
        "unknown_task",
    ]
    assert worker.alive() and worker.pid == pid  # the same consumer, never restarted
    assert "Unrecoverable" not in worker.log_text()
    assert broker.queue_length(QUEUE) == 0  # every one acknowledged, none requeued
