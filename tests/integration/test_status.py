"""`sandbox-platform status --json` reads the real system in the seed's shape."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import platform_env, wait_until

pytestmark = pytest.mark.slow
SEED_KEYS = {
    "readiness",
    "heartbeat",
    "governor",
    "worker_queue_length",
    "completed_jobs",
    "alerts",
    "idempotent_operations",
}


def test_status_reports_the_seed_keys_from_the_real_system(
    guarded, worker_factory, platform_app, platform_settings_kwargs, redis_client
) -> None:
    worker_factory(platform_app, "tests.worker_app")
    guarded.effect_once.delay("status-order", 0.0, "status-runs")
    for i in range(3):
        guarded.limited.delay("status-done", i)
    wait_until(
        lambda: redis_client.llen("status-done") == 3 and redis_client.llen("status-runs"),
        timeout=30,
    )

    def status() -> dict[str, object]:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "sandbox_platform",
                "status",
                "--json",
                "--app",
                "tests.worker_app",
            ],
            env=platform_env(**platform_settings_kwargs),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        return dict(json.loads(proc.stdout))

    report = wait_until(lambda: (s := status()) and s["completed_jobs"] == 4 and s, timeout=30)
    assert set(report) == SEED_KEYS
    assert report["idempotent_operations"] == 1
    assert report["worker_queue_length"] == 0
    assert report["readiness"]["checks"]["worker"] is True  # type: ignore[index]
    assert len(report["heartbeat"]["workers"]) == 1  # type: ignore[index, arg-type]
