"""The README's quick start: `sandbox-platform demo` on embedded defaults (its own
redis-server from the package, a SQLite sandbox database, a real worker)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sandbox_platform.core.embedded import embedded_redis_running, stop_embedded_redis
from tests.helpers import platform_env

pytestmark = pytest.mark.slow


def test_demo_runs_on_embedded_defaults(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "sandbox_platform", "demo", "--orders", "2"],
            env=platform_env(data_dir=data_dir),
            capture_output=True,
            text=True,
            timeout=180,
        )
        stopped = not embedded_redis_running(data_dir)  # the demo stops what it started
    finally:
        stop_embedded_redis(data_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = " ".join(proc.stdout.split())
    assert "2 orders processed; 4 irreversible calls" in out, proc.stdout
    assert "sim_order-" in out
    assert (data_dir / "sandbox.sqlite3").exists()
    assert stopped
