"""Helpers for tests: waiting with a deadline, reading JSON logs, child environments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


def platform_env(**settings: object) -> dict[str, str]:
    """A child-process environment with SANDBOX_PLATFORM_* set from ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_PLATFORM_")}
    for key, value in settings.items():
        if value is not None:
            env[f"SANDBOX_PLATFORM_{key.upper()}"] = str(value)
    env.setdefault("C_FORCE_ROOT", "1")
    return env


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05, message: str = ""):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns a truthy value; fail with ``message`` at the deadline."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(message or f"condition not met within {timeout}s")
        time.sleep(interval)


def json_lines(text: str) -> list[dict[str, object]]:
    """The JSON objects among a log's lines (Celery's banner is not JSON)."""
    import json

    records = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def poll_until(predicate, timeout: float, step: float = 0.02) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it is true or ``timeout`` passes; return its last verdict."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def session_pids(session_id: int) -> set[int]:
    """Live processes whose session id is ``session_id`` (read from /proc)."""
    import os
    from pathlib import Path

    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        state, session = fields[0], int(fields[3])
        if session == session_id and state != "Z" and int(entry.name) != os.getpid():
            found.add(int(entry.name))
    return found


def pid_alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Receiver:
    """A real local HTTP server collecting JSON POSTs (and counting GETs); with
    ``keep_alive``, it speaks HTTP/1.1 and keeps connections open between requests."""

    def __init__(self, *, keep_alive: bool = False) -> None:
        self.posts: list[dict[str, Any]] = []
        self.gets: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def do_GET(self) -> None:
                receiver.gets.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                receiver.posts.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/alerts"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_at_once(
    script: str, args: list[str], env: dict[str, str], count: int, go: Any
) -> list[tuple[int, str, str]]:
    """Start ``count`` ``python -c script *args`` processes that wait for a signal, call
    ``go()`` to release them together, and return each one's (exit code, stdout, stderr).
    Every process is killed by its pid if it is still running at the end."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    try:
        go()
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs, strict=True)]


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """SIGTERM the process group a test started (``start_new_session=True``), SIGKILL it if
    it has not exited within ``timeout``."""
    import signal

    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
