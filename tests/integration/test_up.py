"""``sandbox-platform up`` in a fresh virtual environment with nothing configured: it serves
the dashboard (embedded Redis, SQLite, a worker, beat) and Ctrl-C leaves no process behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dashboard_fixtures import Http, free_port
from tests.helpers import pid_alive, session_pids, wait_until

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
EXTRAS = "embedded,dashboard"


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with the project installed from its own files, with the
    extras `up` needs: [dashboard] (it serves the dashboard) and [embedded] (no Redis URL)."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "python"), *("-m", "pip", "install", "--quiet"), f"{ROOT}[{EXTRAS}]"],
        check=True,
        timeout=900,
        capture_output=True,
    )
    return venv


def test_up_serves_the_dashboard_and_ctrl_c_leaves_nothing(
    fresh_venv: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    data_dir = home / ".local" / "share" / "sandbox-platform"
    env = {"PATH": f"{fresh_venv / 'bin'}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    port = free_port()
    log = tmp_path / "up.log"
    up = subprocess.Popen(
        [str(fresh_venv / "bin" / "sandbox-platform"), "up", "--port", str(port)],
        env=env,  # no SANDBOX_PLATFORM_* variable at all
        cwd=tmp_path,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    http = Http(f"http://127.0.0.1:{port}", headers={})
    redis_pid = None
    try:

        def verdict() -> str:
            with contextlib.suppress(OSError, ValueError):
                status, body = http.get("/api/readiness")
                if status == 200:
                    return str(json.loads(body)["verdict"])
            assert up.poll() is None, log.read_text()[-3000:]
            return ""

        wait_until(lambda: verdict() == "GO", timeout=120, interval=0.5, message="never GO")
        status, page = http.get("/")
        assert status == 200 and b"GO/NO-GO" in page
        assert f"http://127.0.0.1:{port}/" in log.read_text()  # it printed the URL
        redis_pid = int((data_dir / "redis.pid").read_text())
        started = session_pids(up.pid)
        assert len(started) >= 5  # up, worker supervisor + consumer, beat, dashboard

        up.send_signal(signal.SIGINT)
        assert up.wait(90) == 0, log.read_text()[-3000:]
        wait_until(lambda: not session_pids(up.pid), timeout=30, message="processes left")
        wait_until(lambda: not pid_alive(redis_pid), timeout=30, message="redis left")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(up.pid, signal.SIGKILL)
        if redis_pid is not None and pid_alive(redis_pid):
            os.kill(redis_pid, signal.SIGKILL)
