"""Flower sees every job ``sandbox-platform worker --events`` runs, behind basic auth.

The worker and Flower run with exactly the commands docker-compose.yml gives its services
(only the port, the address and the process count are adapted to a test). Flower's API
shows the jobs as SUCCESS with the card number masked, and answers 401 without credentials.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import platform_env, wait_until

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
AUTH_VAR = "SANDBOX_PLATFORM_FLOWER_BASIC_AUTH"
USER, PASSWORD = "ops", "flower-test-pw"
CARD = "4242424242424242"
# no proxy, even if the environment names one: Flower listens on loopback
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _compose_command(service: str) -> list[str]:
    """The service's command from docker-compose.yml, run as ``python -m sandbox_platform``."""
    command = list(COMPOSE["services"][service]["command"])
    assert command[0] == "sandbox-platform", command
    return [sys.executable, "-m", "sandbox_platform", *command[1:]]


def _with_value(command: list[str], option: str, value: str) -> list[str]:
    """``command`` with the value that follows ``option`` replaced."""
    index = command.index(option)
    return [*command[: index + 1], value, *command[index + 2 :]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _started(command: list[str], env: dict[str, str], log_path: Path) -> Iterator[Any]:
    """A process in its own session; SIGTERM, then SIGKILL of its whole group, always."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(15)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _get(port: int, path: str, auth: str | None = None) -> tuple[int, bytes]:
    """Status and body of a GET to Flower; status 0 while nothing listens yet."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if auth is not None:
        request.add_header("Authorization", "Basic " + b64encode(auth.encode()).decode())
    try:
        with OPENER.open(request, timeout=5) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def _group_cmdlines(pgid: int) -> list[str]:
    """The command lines of every live process in a process group (what ``ps`` shows)."""
    lines = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat[stat.rfind(")") + 2 :].split()[2]) == pgid:
                lines.append(Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace"))
    return lines


def _worker_online(port: int, auth: str, hostname: str) -> bool:
    status, body = _get(port, "/workers?json=1", auth)
    if status != 200:
        return False
    workers = json.loads(body)["data"]
    return any(w.get("hostname") == hostname and w.get("status") for w in workers)


def _succeeded(port: int, auth: str, task_ids: set[str]) -> dict[str, Any] | None:
    status, body = _get(port, "/api/tasks", auth)
    if status != 200:
        return None
    tasks: dict[str, Any] = json.loads(body)
    done = {tid: tasks[tid] for tid in task_ids if tasks.get(tid, {}).get("state") == "SUCCESS"}
    return done if len(done) == len(task_ids) else None


@pytest.mark.slow
def test_flower_sees_worker_jobs_with_auth(
    platform_app: Any, platform_settings_kwargs: dict[str, object], tmp_path: Path
) -> None:
    env = platform_env(**platform_settings_kwargs)
    worker_command = [*_compose_command("worker"), "--processes", "1"]
    assert "--events" in worker_command
    port, auth = _free_port(), f"{USER}:{PASSWORD}"
    flower_command = _with_value(_compose_command("flower"), "--address", "127.0.0.1")
    flower_command = _with_value(flower_command, "--port", str(port))
    hostname = f"worker1@{socket.gethostname()}"
    with (
        _started(worker_command, env, tmp_path / "worker.log"),
        _started(flower_command, {**env, AUTH_VAR: auth}, tmp_path / "flower.log") as flower,
    ):
        # a worker heartbeat reached Flower: its event stream is live before any job is sent
        wait_until(
            lambda: _worker_online(port, auth, hostname),
            timeout=60,
            interval=0.5,
            message=f"Flower never showed {hostname} online; see {tmp_path}/*.log",
        )
        task_ids = {
            platform_app.send_task("workers.send_receipt", args=[CARD, "order-1"]).id,
            platform_app.send_task("workers.charge_card", args=["order-2", 1500]).id,
            platform_app.send_task("workers.send_receipt", args=["ops@example.com", "order-3"]).id,
        }
        tasks = wait_until(
            lambda: _succeeded(port, auth, task_ids),
            timeout=60,
            interval=0.5,
            message="Flower did not show every job as SUCCESS",
        )
        receipts = [t for t in tasks.values() if t["name"] == "workers.send_receipt"]
        shown = " ".join(str(t["args"]) for t in receipts)
        assert "***4242" in shown and CARD not in shown, shown
        assert _get(port, "/api/tasks")[0] == 401
        assert _get(port, "/api/tasks", f"{USER}:wrong")[0] == 401
        assert not any(PASSWORD in line for line in _group_cmdlines(flower.pid))


def _flower_refusal(tmp_path: Path, *args: str, **settings: object) -> str:
    """Run ``sandbox-platform flower`` expecting exit 2; return its only stderr line."""
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox_platform", "flower", *args],
        env=platform_env(data_dir=tmp_path, **settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert AUTH_VAR in lines[0]
    return lines[0]


def test_flower_without_auth_refuses_a_public_address(tmp_path: Path) -> None:
    _flower_refusal(tmp_path, "--address", "0.0.0.0")


def test_flower_without_auth_refuses_live_mode_on_loopback(tmp_path: Path) -> None:
    live = {
        "mode": "live",
        "live_database_url": f"sqlite:///{tmp_path / 'live.sqlite3'}",
        "redis_url": "redis://127.0.0.1:1/0",  # live mode names its Redis (never reached here)
        "app": "workers",  # and its app
    }
    _flower_refusal(tmp_path, "--address", "127.0.0.1", **live)


@pytest.mark.parametrize("value", ["admin", f"{USER}:{PASSWORD},broken", ":nouser", "   "])
def test_flower_refuses_malformed_auth(value: str, tmp_path: Path) -> None:
    line = _flower_refusal(tmp_path, "--address", "0.0.0.0", flower_basic_auth=value)
    assert PASSWORD not in line


def test_flower_refuses_credentials_on_the_command_line(tmp_path: Path) -> None:
    _flower_refusal(tmp_path, f"--basic-auth={USER}:{PASSWORD}")
