"""A pickle-serialised message is refused and logged; the worker keeps consuming."""

from __future__ import annotations

import pytest
from celery import Celery

from sandbox_platform.ops.backlog import default_queue
from tests.helpers import json_lines, wait_until

pytestmark = pytest.mark.slow


def test_pickle_message_is_refused_and_worker_keeps_consuming(platform_app, worker_factory) -> None:
    worker = worker_factory(platform_app)
    pickler = Celery("pickler", broker=platform_app.conf.broker_url, set_as_current=False)
    pickler.conf.update(
        task_serializer="pickle",
        accept_content=["pickle", "json"],
        task_default_queue=default_queue(platform_app),  # the (mode-qualified) queue it consumes
    )
    try:
        pickler.send_task("workers.send_receipt", args=["evil@example.com", "order-pickle"])
    finally:
        pickler.close()

    def refused() -> list[dict[str, object]]:
        return [
            r
            for r in json_lines(worker.log_text())
            if "untrusted content of type pickle" in str(r.get("event"))
        ]

    lines = wait_until(refused, timeout=30, message="the pickle message was not refused in the log")
    assert lines[0]["level"] in ("error", "critical")

    platform_app.send_task("workers.send_receipt", args=["ok@example.com", "order-json"])
    ran = wait_until(
        lambda: [
            r
            for r in json_lines(worker.log_text())
            if r.get("event") == "sending receipt" and r.get("order_id") == "order-json"
        ],
        timeout=30,
        message="the worker stopped consuming after the pickle message",
    )
    assert ran
    assert worker.alive()
    assert not [r for r in json_lines(worker.log_text()) if r.get("order_id") == "order-pickle"]
