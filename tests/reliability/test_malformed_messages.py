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
