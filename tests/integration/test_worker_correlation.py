"""A real worker logs JSON lines carrying the correlation id bound by the enqueuing process,
and a child task it enqueues carries the same id (solo and threads: jobs in flight at once
each keep their own)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.brokers import ON_BOTH_BROKERS
from tests.helpers import json_lines, platform_env, wait_until
from tests.pools import ON_BOTH_POOLS

pytestmark = [pytest.mark.slow, ON_BOTH_POOLS, ON_BOTH_BROKERS]
JOBS = 4

ENQUEUE = textwrap.dedent(
    """
    import sys
    from sandbox_platform.app.factory import create_app
    from sandbox_platform.core.context import bind_correlation_id

    app = create_app()
    for correlation_id in sys.argv[1:]:
        with bind_correlation_id(correlation_id):
            result = app.send_task(
                "workers.charge_card",
                args=[f"order-{correlation_id}", 4200],
                kwargs={"email": "a@example.com"},
            )
        print(result.id)
    """
)


def _task_lines(worker, task_name: str) -> list[dict[str, object]]:
    return [
        r
        for r in json_lines(worker.log_text())
        if r.get("task_name") == task_name
        and r.get("logger") == "sandbox_platform.examples.shop.tasks"
    ]


def test_correlation_id_follows_task_and_child(
    platform_app, worker_factory, platform_settings_kwargs
) -> None:
    """Four jobs from another process, each with its own correlation id (in flight at once on
    a threads worker): each job's lines and its child's carry its own id."""
    worker = worker_factory(platform_app)
    correlation_ids = [f"corr-from-another-process-000{i}" for i in range(1, JOBS + 1)]
    proc = subprocess.run(
        [sys.executable, "-c", ENQUEUE, *correlation_ids],
        env=platform_env(**platform_settings_kwargs),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    task_ids = dict(zip(correlation_ids, proc.stdout.split(), strict=True))

    def all_of(task_name: str):  # type: ignore[no-untyped-def]
        return lambda: (found := _task_lines(worker, task_name)) and len(found) >= JOBS and found

    parents = wait_until(all_of("workers.charge_card"), timeout=30, message="parents missing")
    children = wait_until(all_of("workers.send_receipt"), timeout=30, message="children missing")
    assert {line["correlation_id"]: line["task_id"] for line in parents} == task_ids
    assert all(line["attempt"] == 1 for line in parents)
    assert sorted(line["correlation_id"] for line in children) == sorted(correlation_ids)
    assert not {line["task_id"] for line in children} & set(task_ids.values())


def test_task_enqueued_without_id_gets_a_fresh_one(platform_app, worker_factory) -> None:
    worker = worker_factory(platform_app)
    for n in range(JOBS):
        platform_app.send_task("workers.send_receipt", args=[f"{n}@example.com", f"order-{n}"])

    def every_line() -> list[dict[str, object]]:
        found = _task_lines(worker, "workers.send_receipt")
        return found if len(found) >= JOBS else []

    lines = wait_until(every_line, timeout=30)
    ids = {line["correlation_id"] for line in lines}
    assert len(ids) == JOBS and all(isinstance(i, str) and len(i) == 32 for i in ids)
