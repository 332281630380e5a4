"""Start, wait for and stop real ``celery worker`` processes (used by the demo and tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from celery import Celery

from sandbox_platform.core.live_requirements import EXAMPLE_APP

__all__ = ["WorkerSubprocess", "wait_for_ping"]

LEAN_FLAGS = ("--without-gossip", "--without-mingle", "--without-heartbeat")


def wait_for_ping(app: Celery, hostname: str, timeout: float) -> bool:
    """Poll ``control.ping`` until ``hostname`` answers or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.ping(destination=[hostname], timeout=0.5) or []
        if any(hostname in reply for reply in replies):
            return True
    return False


class WorkerSubprocess:
    """One ``celery -A <module> worker`` subprocess, stopped by its pid."""

    def __init__(
        self,
        app_module: str = EXAMPLE_APP,
        *,
        hostname: str | None = None,
        pool: str = "solo",
        concurrency: int = 1,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        extra_args: Sequence[str] = (),
        queues: Sequence[str] = (),
        cwd: Path | None = None,
    ) -> None:
        self.app_module = app_module
        self.cwd = cwd
        self.hostname = hostname or f"sp-{os.getpid()}-{time.monotonic_ns()}@localhost"
        self.pool = pool
        self.concurrency = concurrency
        self.env = env
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.queues = list(queues)
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[Any] | None = None

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            self.app_module,
            "worker",
            "--pool",
            self.pool,
            "--concurrency",
            str(self.concurrency),
            "-n",
            self.hostname,
            "--loglevel",
            "INFO",
            *LEAN_FLAGS,
        ]
        if self.queues:
            cmd += ["-Q", ",".join(self.queues)]
        return [*cmd, *self.extra_args]

    def start(self) -> WorkerSubprocess:
        if self.log_path is not None:
            self._log_file = self.log_path.open("ab")
        output = self._log_file if self._log_file is not None else subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.command(),
            env=self.env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.cwd,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, "worker not started"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, app: Celery, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.process.returncode if self.process else None
                raise RuntimeError(f"worker exited early with {code}; log: {self.log_path}")
            if wait_for_ping(app, self.hostname, min(2.0, deadline - time.monotonic())):
                return
        raise TimeoutError(f"worker {self.hostname} did not answer ping within {timeout}s")

    def stop(self, timeout: float = 20.0) -> int | None:
        """Warm shutdown (SIGTERM), then SIGKILL of its whole process group after timeout."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._kill_group()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL the worker and its pool children (its process group)."""
        self._kill_group()
        if self.process is not None:
            self.process.wait(10)

    def _kill_group(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")
