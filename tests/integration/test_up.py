"""``sandbox-platform up`` in a fresh virtual environment with nothing configured: it serves
the dashboard (embedded Redis, SQLite, a worker, beat) and Ctrl-C leaves no process behind.

The environment holds a wheel install (pip builds one from the checkout), so the same
environment shows the bundled example app working without the repository: the wheel has
``sandbox_platform.examples.shop`` and no ``workers`` or ``beat``, and ``demo`` and the seed
facade's defaults run the example's jobs."""

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


# -- the bundled example from the wheel (issue 22, item 1) ------------------------------------

SEED_FACADE = """
import time

from sqlalchemy import func, select

from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import JobRun
from sandbox_platform.orchestrator import SandboxOrchestrator

charged = select(func.count()).select_from(JobRun).where(
    JobRun.task_name == "workers.charge_card", JobRun.state == "succeeded"
)
with SandboxOrchestrator() as sandbox:  # its defaults: the bundled example's worker and beat
    assert sandbox.is_ready()
    sandbox.worker.submit("workers.charge_card", "order-1", 1000)
    deadline = time.monotonic() + 60
    while True:
        with session_scope(sandbox.settings.active_database_url) as session:
            if session.scalar(charged):
                break
        assert time.monotonic() < deadline, "the example's charge never succeeded"
        time.sleep(0.2)
print("charged")
"""


def _in_fresh_venv(
    fresh_venv: Path, tmp_path: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run a program of the fresh environment from an empty directory, nothing configured:
    the checkout is nowhere on the path, and the repository's workers/ and beat/ are absent."""
    home = tmp_path / "home"
    env = {"PATH": f"{fresh_venv / 'bin'}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    return subprocess.run(
        [str(fresh_venv / "bin" / args[0]), *args[1:]],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_the_wheel_holds_the_example_and_not_workers_or_beat(
    fresh_venv: Path, tmp_path: Path
) -> None:
    found = "import importlib.util as u; print([bool(u.find_spec(n)) for n in %r])"
    names = ("sandbox_platform.examples.shop", "workers", "beat")
    done = _in_fresh_venv(fresh_venv, tmp_path, "python", "-c", found % (names,))
    assert done.stdout.strip() == "[True, False, False]", done.stdout + done.stderr


def test_demo_runs_the_bundled_example_from_the_wheel(fresh_venv: Path, tmp_path: Path) -> None:
    done = _in_fresh_venv(fresh_venv, tmp_path, "sandbox-platform", "demo", "--orders", "2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 orders processed; 4 irreversible calls" in " ".join(done.stdout.split())


def test_the_seed_facade_s_defaults_run_from_the_wheel(fresh_venv: Path, tmp_path: Path) -> None:
    done = _in_fresh_venv(fresh_venv, tmp_path, "python", "-c", SEED_FACADE)
    assert (done.returncode, done.stdout.strip()) == (0, "charged"), done.stderr[-3000:]
