"""`sandbox-platform health`: exit 0 while this host's worker refreshes its liveness key,
1 once it is gone (a container liveness probe)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import platform_env, wait_until

pytestmark = pytest.mark.slow


def _health(settings: dict[str, object]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox_platform", "health", "--host", "localhost"],
        env=platform_env(**settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_health_follows_the_worker(worker_factory, platform_app, platform_settings_kwargs) -> None:
    settings = {**platform_settings_kwargs, "heartbeat_interval": 0.5}
    assert _health(settings).returncode == 1  # no worker yet
    worker = worker_factory(platform_app, "tests.worker_app", heartbeat_interval=0.5)
    alive = wait_until(lambda: (p := _health(settings)).returncode == 0 and p, timeout=30)
    assert worker.hostname in alive.stdout
    worker.stop()
    wait_until(
        lambda: _health(settings).returncode == 1,
        timeout=30,
        message="health still reports the stopped worker",
    )
