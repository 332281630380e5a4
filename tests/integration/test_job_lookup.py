"""``jobs show <id>`` and the dashboard's ``/jobs/<id>`` find a job by whatever its user holds:
the task id ``.delay()`` returned, the correlation id bound around the enqueue, or its
idempotency key as stored (``<task name>:<key value>``), and say which matched. A real worker
runs the job on PostgreSQL; the key is found in its Redis record (enqueue-side dedupe).

Regression (issue 21.1): both took only a correlation id; a task id answered "nothing carries
correlation id ..."."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from sandbox_platform import bind_correlation_id
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import JobRun
from tests.helpers import platform_env, wait_until

pytestmark = pytest.mark.slow

NOTHING = "nothing carries task id, correlation id or idempotency key"


@pytest.fixture
def platform_settings_kwargs(pg_settings_kwargs):  # type: ignore[no-untyped-def]
    return pg_settings_kwargs


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox_platform", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _ok(env: dict[str, str], *args: str) -> str:
    done = _cli(env, *args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def test_a_job_is_found_by_task_id_correlation_id_or_idempotency_key(
    guarded: Any,
    platform_app: Any,
    worker_factory: Any,
    dashboard_factory: Any,
    pg_settings_kwargs: dict[str, object],
) -> None:
    worker_factory(platform_app, "tests.worker_app")
    value = f"lookup-{uuid.uuid4().hex[:8]}"
    with bind_correlation_id(f"corr-{value}") as correlation_id:
        job = guarded.idem_count.delay(value, f"{value}:count")
        other = guarded.stamp.delay(f"{value}:stamps", 1)  # same story, another job
    key = f"tests.idem_count:{value}"
    database = str(pg_settings_kwargs["database_url"])

    def recorded() -> bool:
        with session_scope(database) as session:
            runs = session.scalars(select(JobRun).where(JobRun.correlation_id == correlation_id))
            return {(run.task_id, run.state) for run in runs} == {
                (job.id, "succeeded"),
                (other.id, "succeeded"),
            }

    wait_until(recorded, timeout=60, interval=0.2, message="the jobs' run records never came")
    assert len({job.id, correlation_id, key}) == 3

    env = platform_env(**pg_settings_kwargs, readiness_timeout=1)
    env["COLUMNS"] = "250"
    looked_up = (
        ("task_id", job.id, f"matched task id {job.id} (correlation id {correlation_id})"),
        ("correlation_id", correlation_id, f"matched correlation id {correlation_id}"),
        (
            "idempotency_key",
            key,
            f"matched idempotency key {key} (task id {job.id}, correlation id {correlation_id})",
        ),
    )
    for kind, held, said in looked_up:
        shown = json.loads(_ok(env, "jobs", "show", held, "--json"))
        assert shown["matched"] == {"kind": kind, "value": held}
        assert shown["correlation_id"] == correlation_id
        runs = {e["task_id"]: e["state"] for e in shown["entries"] if e["kind"] == "run"}
        assert runs == {job.id: "succeeded", other.id: "succeeded"}
        marked = {e["task_id"] for e in shown["entries"] if e.get("matched_job")}
        assert marked == (set() if kind == "correlation_id" else {job.id})
        if kind != "correlation_id":
            table = _ok(env, "jobs", "show", held)
            assert said in table and "tests.idem_count: succeeded" in table, table

    unknown = _cli(env, "jobs", "show", f"nobody-{value}")
    assert unknown.returncode == 1, (unknown.stdout, unknown.stderr)
    assert unknown.stderr.strip() == f"sandbox-platform: {NOTHING} 'nobody-{value}'"

    served = dashboard_factory("tests.worker_app")
    for kind, held, said in looked_up:
        status, body = served.http.get(f"/jobs/{held}")
        page = body.decode()
        assert status == 200, page[:500]
        assert said in page and job.id in page and other.id in page
        assert served.http.json(f"/api/jobs/{held}")["matched"] == {"kind": kind, "value": held}
    status, body = served.http.get(f"/jobs/nobody-{value}")
    assert status == 200 and NOTHING in body.decode()
    assert served.http.json(f"/api/jobs/nobody-{value}")["matched"] is None
