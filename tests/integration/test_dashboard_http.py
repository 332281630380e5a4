"""The dashboard's endpoints for machines, against real workers, beat and Redis:
``/metrics`` counts every worker's jobs, ``/readyz`` follows the platform's health, auth holds."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from sandbox_platform.app.factory import create_app
from sandbox_platform.coordination.governor import Governor
from sandbox_platform.core.settings import load_settings
from tests.helpers import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("live_ready_limits")]
WORKER_APP = "tests.worker_app"


def _samples(text: str, name: str) -> list[Any]:
    return [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def _succeeded(served: Any, task: str) -> float:
    status, body = served.http.get("/metrics")
    assert status == 200, body[:300]
    samples = _samples(body.decode(), "sandbox_platform_jobs_total")
    return sum(s.value for s in samples if s.labels == {"task": task, "state": "succeeded"})


def test_metrics_count_every_job_of_two_worker_processes(
    guarded,
    worker_factory,
    platform_app,
    dashboard_factory,
    tmp_path,
) -> None:
    first = worker_factory(platform_app, WORKER_APP)
    second = worker_factory(platform_app, WORKER_APP)
    jobs = 40
    for n in range(jobs):
        guarded.charge.delay(str(tmp_path / "sink"), n)
    served = dashboard_factory()

    wait_until(
        lambda: _succeeded(served, "tests.charge") == jobs,
        timeout=60,
        message="the job counters did not reach the number of jobs run",
    )
    totals = platform_app.control.inspect(destination=[first.hostname, second.hostname]).stats()
    per_worker = [totals[w.hostname]["total"].get("tests.charge", 0) for w in (first, second)]
    assert sum(per_worker) == jobs and all(n > 0 for n in per_worker)  # both did some

    _status, body = served.http.get("/metrics")
    text = body.decode()
    intercepts = _samples(text, "sandbox_platform_dry_run_intercepts_total")
    assert sum(s.value for s in intercepts if s.labels["action"] == "payment") == jobs
    histogram = _samples(text, "sandbox_platform_job_run_seconds_count")
    assert [s.value for s in histogram if s.labels["task"] == "tests.charge"] == [jobs]
    assert _samples(text, "sandbox_platform_queue_length")  # the queue gauge is there
    assert served.http.get("/metrics", auth=False)[0] == 401
    assert served.http.get("/api/alerts", auth=False)[0] == 401


def test_readyz_turns_503_when_its_redis_stops(
    private_redis,
    platform_settings_kwargs,
    worker_factory,
    beat_factory,
    dashboard_factory,
) -> None:
    proc, url = private_redis
    overrides = {"redis_url": url, "heartbeat_interval": 1, "readiness_timeout": 1}
    Governor(redis.Redis.from_url(url), "sp").set_limit("test-bucket", 1000, 1.0)
    app = create_app(load_settings(**{**platform_settings_kwargs, **overrides}))
    worker_factory(app, WORKER_APP, **overrides)
    beat_factory(**overrides)
    served = dashboard_factory(**overrides)

    def status() -> int:
        return served.http.get("/readyz", auth=False)[0]

    wait_until(lambda: status() == 200, timeout=60, message="/readyz never said GO")
    proc.kill()
    proc.wait(10)
    wait_until(lambda: status() == 503, timeout=60, message="/readyz did not turn 503")
    code, body = served.http.get("/readyz", auth=False)
    assert code == 503 and b"REDIS_UNREACHABLE" in body
    assert served.http.get("/healthz", auth=False)[0] == 200  # alive, just not ready
    app.close()
