"""Fixtures for tests that serve the dashboard and drive a beat: real processes, each
stopped by its pid. Import them into a test module to use them."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import platform_env

USER, PASSWORD = "operator", "s3cret-dashboard-pw"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def auth_header(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@dataclass
class Http:
    """A tiny client for the dashboard: ``get`` returns (status, body bytes)."""

    base: str
    headers: dict[str, str] = field(default_factory=auth_header)

    def get(self, path: str, *, auth: bool = True) -> tuple[int, bytes]:
        headers = self.headers if auth else {}
        request = urllib.request.Request(self.base + path, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback)
                return int(response.status), response.read()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read()

    def json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, (status, body[:500])
        return json.loads(body)


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    http: Http
    log: Path

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


def _wait_healthy(served: Served, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise RuntimeError(f"dashboard exited early: {served.log.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            if served.http.get("/healthz", auth=False)[0] == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"dashboard did not answer /healthz within {timeout}s")


@pytest.fixture
def dashboard_factory(tmp_path: Path, platform_settings_kwargs: dict[str, object]) -> Iterator[Any]:
    """Start ``sandbox-platform dashboard`` processes (credentials USER/PASSWORD)."""
    started: list[Served] = []

    def start(app_module: str = "tests.worker_app", **overrides: object) -> Served:
        port = free_port()
        settings = {
            "dashboard_user": USER,
            "dashboard_password": PASSWORD,
            **platform_settings_kwargs,
            **overrides,
        }
        log = tmp_path / f"dashboard-{len(started) + 1}.log"
        command = [sys.executable, "-m", "sandbox_platform", "dashboard", "--port", str(port)]
        process = subprocess.Popen(
            [*command, "--app", app_module],
            env=platform_env(**settings),
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        served = Served(process, Http(f"http://127.0.0.1:{port}"), log)
        started.append(served)
        _wait_healthy(served)
        return served

    yield start
    for served in started:
        served.stop()


@pytest.fixture
def beat_factory(tmp_path: Path, platform_settings_kwargs: dict[str, object]) -> Iterator[Any]:
    """Start real ``celery -A beat beat`` processes (the platform's schedule)."""
    from sandbox_platform.procs.beat import BeatSubprocess

    started: list[BeatSubprocess] = []

    def start(**overrides: object) -> BeatSubprocess:
        index = len(started) + 1
        beat = BeatSubprocess(
            "beat",
            env=platform_env(**{**platform_settings_kwargs, **overrides}),
            log_path=tmp_path / f"beat-{index}.log",
            schedule_path=tmp_path / f"beat-{index}.schedule",
        )
        started.append(beat)
        beat.start()
        return beat

    yield start
    for beat in started:
        beat.stop(timeout=15)
