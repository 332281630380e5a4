"""`sandbox-platform worker`: one lean consumer per process, a crashed one is restarted,
SIGTERM stops them all (warm shutdown); `--pool threads --concurrency N` runs N jobs in
flight per process, and a pool shape that cannot work is refused in one line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from tests.helpers import platform_env, wait_until

pytestmark = pytest.mark.slow


def _warm_stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM: every consumer shuts down warmly and the command exits 0."""
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _pids(app, names: list[str]) -> dict[str, int]:  # type: ignore[no-untyped-def]
    stats = app.control.inspect(destination=names, timeout=1.0).stats() or {}
    return {name: int(info["pid"]) for name, info in stats.items()}


def test_worker_command_supervises_consumers(
    platform_app, platform_settings_kwargs, tmp_path
) -> None:
    log = (tmp_path / "supervisor.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox_platform",
            "worker",
            "--processes",
            "2",
            "--app",
            "tests.worker_app",
        ],
        env=platform_env(**platform_settings_kwargs),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    names = [f"worker{i}@{socket.gethostname()}" for i in (1, 2)]
    try:
        pids = wait_until(
            lambda: (p := _pids(platform_app, names)) and len(p) == 2 and p,
            timeout=90,
            interval=0.5,
            message="two consumers did not answer",
        )
        os.kill(pids[names[0]], signal.SIGKILL)
        restarted = wait_until(
            lambda: (
                (p := _pids(platform_app, names))
                and len(p) == 2
                and p[names[0]] != pids[names[0]]
                and p
            ),
            timeout=90,
            interval=0.5,
            message="the killed consumer was not restarted",
        )
        assert restarted[names[1]] == pids[names[1]]
        _warm_stop(proc)
    finally:
        _kill(proc)
        log.close()


def _worker_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sandbox_platform", "worker", "--app", "tests.worker_app", *args]


def test_worker_command_runs_jobs_in_flight_on_threads(
    platform_app, platform_settings_kwargs, tmp_path
) -> None:
    log = (tmp_path / "supervisor.log").open("wb")
    proc = subprocess.Popen(
        _worker_command("--processes", "1", "--pool", "threads", "--concurrency", "8"),
        env=platform_env(**platform_settings_kwargs),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    name = f"worker1@{socket.gethostname()}"
    try:
        stats = wait_until(
            lambda: platform_app.control.inspect(destination=[name], timeout=1.0).stats() or {},
            timeout=90,
            interval=0.5,
            message="the threads consumer did not answer",
        )
        pool = stats[name]["pool"]
        assert pool["max-concurrency"] == 8
        assert pool["implementation"].endswith("thread_pool:PlatformThreadPool")
        _warm_stop(proc)
    finally:
        _kill(proc)
        log.close()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--pool", "solo", "--concurrency", "2"), "solo pool runs one job at a time"),
        (("--pool", "gevent"), "must be one of threads, solo, prefork"),
        (("--pool", "threads", "--concurrency", "0"), "must be at least 1"),
    ],
)
def test_worker_command_refuses_a_bad_pool_shape_in_one_line(
    platform_settings_kwargs, args: tuple[str, ...], says: str
) -> None:
    done = subprocess.run(
        _worker_command(*args),
        env=platform_env(**platform_settings_kwargs),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert says in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr
