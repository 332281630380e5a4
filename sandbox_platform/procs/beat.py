"""A real ``celery beat`` subprocess, started and stopped by its pid."""

from __future__ import annotations

import sys
from pathlib import Path

from celery import Celery

from sandbox_platform.core.live_requirements import EXAMPLE_APP
from sandbox_platform.procs.worker import WorkerSubprocess

__all__ = ["BeatSubprocess"]


class BeatSubprocess(WorkerSubprocess):
    """One ``celery -A <module> beat`` subprocess (the platform's LeaderScheduler), by pid.

    It reuses :class:`~sandbox_platform.procs.worker.WorkerSubprocess`'s start/stop/kill (own
    session, SIGTERM then SIGKILL of the process group); only the command differs. Beat
    answers no ping, so there is no ``wait_ready``: the heartbeat it drives is the proof.
    """

    def __init__(
        self,
        app_module: str = EXAMPLE_APP,
        *,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        schedule_path: Path | None = None,
    ) -> None:
        super().__init__(app_module, env=env, log_path=log_path)
        self.schedule_path = schedule_path

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "celery", "-A", self.app_module, "beat", "--loglevel", "INFO"]
        if self.schedule_path is not None:  # ignored by the LeaderScheduler, kept off the cwd
            cmd += ["--schedule", str(self.schedule_path)]
        return cmd

    def wait_ready(self, app: Celery, timeout: float = 60.0) -> None:
        raise NotImplementedError("beat answers no ping; wait for a heartbeat tick instead")
