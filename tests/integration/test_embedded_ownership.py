"""The embedded redis-server is owned: whoever starts it stops it, or says where it runs.

Real processes throughout: ``celery -A workers report`` (a one-shot command that loads the
app), two Python processes sharing one server, ``sandbox-platform worker`` (a supervisor and
its celery child) and ``sandbox-platform embedded status|stop``. Every process a test starts
is stopped by its pid, and the data dir's server is stopped, whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox_platform.core.embedded import (
    embedded_redis_running,
    socket_path_for,
    stop_embedded_redis,
)
from tests.helpers import pid_alive, platform_env, wait_until

pytestmark = pytest.mark.slow

USER = """
import sys
from sandbox_platform.core.redis_client import redis_url
from sandbox_platform.core.settings import load_settings

print(redis_url(load_settings()), flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "d"
    yield directory
    stop_embedded_redis(directory)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _servers(socket_path: Path) -> list[int]:
    """redis-server processes serving ``socket_path`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "redis-server" in cmdline and str(socket_path) in cmdline and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox_platform", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _env(data_dir: Path) -> dict[str, str]:
    return platform_env(data_dir=data_dir)  # no REDIS_URL: the embedded server


def test_a_one_shot_command_stops_what_it_started(data_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers", "report"],
        env=_env(data_dir),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (data_dir / "redis.log").exists()  # it did start one
    assert not embedded_redis_running(data_dir)
    assert _servers(socket_path_for(data_dir)) == []
    assert "embedded redis-server" not in done.stderr  # nothing to announce: it is gone


def test_left_to_other_users_it_is_announced_then_status_and_stop(
    data_dir: Path, procs: list[subprocess.Popen[str]]
) -> None:
    env = _env(data_dir)

    def user() -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", USER],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("unix://")
        return proc

    starter = user()
    other = user()
    _, err = starter.communicate("\n", timeout=30)  # the starter exits; the other still uses it
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert f"process(es) {other.pid}" in lines[0]
    assert str(data_dir / "redis.sock") in lines[0]
    assert "sandbox-platform embedded stop" in lines[0]
    assert embedded_redis_running(data_dir)

    status = _cli(env, "embedded", "status", "--json")
    assert status.returncode == 0, status.stderr
    found = json.loads(status.stdout)
    assert found["running"] is True
    assert found["socket"] == str(data_dir / "redis.sock")
    assert found["pid"] in _servers(data_dir / "redis.sock")
    assert found["started_by"]["pid"] == starter.pid
    assert found["users"] == [other.pid]

    stopped = _cli(env, "embedded", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped (pid {found['pid']}" in stopped.stdout
    assert not embedded_redis_running(data_dir)
    assert _servers(socket_path_for(data_dir)) == []
    assert _cli(env, "embedded", "status").returncode == 1
    other.communicate("\n", timeout=30)


def test_the_worker_command_stops_the_server_it_started(
    data_dir: Path, procs: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    out = tmp_path / "worker.log"
    with out.open("w") as handle:
        worker = subprocess.Popen(
            [sys.executable, "-m", "sandbox_platform", "worker", "--processes", "1"],
            env=_env(data_dir),
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    procs.append(worker)
    wait_until(lambda: "worker ready" in out.read_text(), timeout=90, message="no worker ready")
    servers = _servers(data_dir / "redis.sock")
    assert len(servers) == 1
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(60) == 0, out.read_text()
    wait_until(lambda: not pid_alive(servers[0]), timeout=10, message="server left running")
    assert not embedded_redis_running(data_dir)
    assert "keeps running" not in out.read_text()
