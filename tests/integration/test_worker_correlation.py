"""A real worker logs JSON lines carrying the correlation id bound by the enqueuing process,
and a child task it enqueues carries the same id."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.brokers import ON_BOTH_BROKERS
from tests.helpers import json_lines, platform_env, wait_until

pytestmark = [pytest.mark.slow, ON_BOTH_BROKERS]

ENQUEUE = textwrap.dedent(
    """
    import sys
    from sandbox_platform.app.factory import create_app
    from sandbox_platform.core.context import bind_correlation_id

    app = create_app()
    with bind_correlation_id(sys.argv[1]):
        result = app.send_task(
            "workers.charge_card", args=["order-42", 4200], kwargs={"email": "a@example.com"}
        )
    print(result.id)
    """
)


def _task_lines(worker, task_name: str) -> list[dict[str, object]]:
    return [
        r
        for r in json_lines(worker.log_text())
        if r.get("task_name") == task_name and r.get("logger") == "workers.tasks"
    ]


def test_correlation_id_follows_task_and_child(
    platform_app, worker_factory, platform_settings_kwargs
) -> None:
    worker = worker_factory(platform_app)
    correlation_id = "corr-from-another-process-0001"
    proc = subprocess.run(
        [sys.executable, "-c", ENQUEUE, correlation_id],
        env=platform_env(**platform_settings_kwargs),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    task_id = proc.stdout.strip()

    parent = wait_until(
        lambda: _task_lines(worker, "workers.charge_card"),
        timeout=30,
        message="the worker never logged the task",
    )
    child = wait_until(
        lambda: _task_lines(worker, "workers.send_receipt"),
        timeout=30,
        message="the child task never ran",
    )
    assert parent[0]["correlation_id"] == correlation_id
    assert parent[0]["task_id"] == task_id
    assert parent[0]["attempt"] == 1
    assert child[0]["correlation_id"] == correlation_id
    assert child[0]["task_id"] != task_id


def test_task_enqueued_without_id_gets_a_fresh_one(platform_app, worker_factory) -> None:
    worker = worker_factory(platform_app)
    platform_app.send_task("workers.send_receipt", args=["b@example.com", "order-1"])
    platform_app.send_task("workers.send_receipt", args=["c@example.com", "order-2"])

    def two_lines() -> list[dict[str, object]]:
        found = _task_lines(worker, "workers.send_receipt")
        return found if len(found) >= 2 else []

    lines = wait_until(two_lines, timeout=30)
    ids = {line["correlation_id"] for line in lines}
    assert len(ids) == 2 and all(isinstance(i, str) and len(i) == 32 for i in ids)
