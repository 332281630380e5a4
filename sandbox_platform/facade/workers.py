"""The seed's ``WorkerProcess``: its worker pool as real ``celery worker`` processes."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Any

from celery import Celery

from sandbox_platform.app.factory import create_app
from sandbox_platform.core.errors import PlatformError
from sandbox_platform.core.live_requirements import EXAMPLE_APP
from sandbox_platform.core.payload import check_payload
from sandbox_platform.core.settings import Settings, load_settings
from sandbox_platform.ops.backlog import broker_queues, default_queue
from sandbox_platform.ops.status import completed_jobs, queue_length
from sandbox_platform.procs.env import settings_env
from sandbox_platform.procs.worker import WorkerSubprocess

__all__ = ["WorkerProcess", "not_initialized"]

READY_TIMEOUT = 60.0


def not_initialized(what: str) -> PlatformError:
    return PlatformError(
        f"{what}: the sandbox is not initialized; call initialize() first "
        "(or use 'with SandboxOrchestrator() as sandbox:')"
    )


class WorkerProcess:
    """The seed's worker pool, as ``max_workers`` real ``celery worker`` processes.

    Each process runs ``celery -A <app_module> worker`` with the solo pool and the lean flags
    (``--without-gossip --without-mingle --without-heartbeat``): one consumer per process, as
    the worker topology in docs/architecture.md prescribes. They share the broker queue, so
    ``max_workers`` is the number of jobs that run at once.

    ``poll_interval`` is accepted for seed compatibility and stored, but it changes nothing:
    the Redis broker delivers by a blocking pop, so a worker never polls the queue, and the
    worker's liveness key is refreshed every half ``heartbeat_interval`` (a setting). There is
    no per-worker knob it could honestly map to.

    ``settings`` default to the environment (:func:`~sandbox_platform.core.settings.load_settings`);
    ``app`` is the Celery app used to ping the workers and publish jobs (default: one built
    from the settings with :func:`~sandbox_platform.app.factory.create_app` on :meth:`start`).
    """

    def __init__(
        self,
        poll_interval: float = 5.0,
        max_workers: int = 4,
        *,
        app_module: str = EXAMPLE_APP,
        settings: Settings | None = None,
        app: Celery | None = None,
        log_dir: Path | None = None,
    ) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be an int >= 1, got {max_workers!r}")
        if (
            isinstance(poll_interval, bool)
            or not isinstance(poll_interval, int | float)
            or not poll_interval > 0
        ):
            raise ValueError(f"poll_interval must be a positive number, got {poll_interval!r}")
        if not isinstance(app_module, str) or not app_module:
            raise ValueError(f"app_module must be a non-empty module name, got {app_module!r}")
        self.poll_interval = float(poll_interval)
        self.max_workers = max_workers
        self.app_module = app_module
        self.settings = settings
        self.app = app
        self.log_dir = log_dir
        self.processes: list[WorkerSubprocess] = []
        self._owns_app = False

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        """True when the workers were started and every one of them is alive."""
        return bool(self.processes) and all(p.alive() for p in self.processes)

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers of the last :meth:`start` (kept after :meth:`stop`)."""
        return [p.pid for p in self.processes if p.process is not None]

    def start(self, timeout: float = READY_TIMEOUT) -> WorkerProcess:
        """Start the worker processes and wait until each answers a ping (no-op if running)."""
        if self.is_running:
            return self
        self.stop()
        settings = self.settings if self.settings is not None else load_settings()
        self.settings = settings
        app = self._app()
        env = settings_env(settings)
        host = socket.gethostname()
        token = uuid.uuid4().hex[:8]
        self.processes = [
            WorkerSubprocess(
                self.app_module,
                hostname=f"sandbox{n}-{token}@{host}",
                env=env,
                log_path=(self.log_dir / f"worker-{n}.log") if self.log_dir else None,
            )
            for n in range(1, self.max_workers + 1)
        ]
        try:
            for process in self.processes:
                process.start()
            for process in self.processes:
                process.wait_ready(app, timeout=timeout)
        except Exception as exc:
            logs = "\n".join(p.log_text()[-2000:] for p in self.processes)
            self.stop()
            raise PlatformError(
                f"worker processes ({self.app_module}) did not start: {exc}\n{logs}".rstrip()
            ) from exc
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """Warm-stop every worker by its pid (SIGKILL of its process group after ``timeout``)."""
        for process in self.processes:
            process.stop(timeout=timeout)
        if self._owns_app and self.app is not None:
            self.app.close()
            self.app = None
            self._owns_app = False

    # -- jobs --------------------------------------------------------------------------------

    def submit(self, task_name: str, *args: Any, **kwargs: Any) -> str:
        """Publish ``task_name(*args, **kwargs)`` to the workers' queue; return the task id.

        The task is sent by name through the real app (the workers must know it: this process's
        app does not import the worker's task modules). Arguments must be JSON within
        ``payload_limit_bytes`` (:class:`~sandbox_platform.core.errors.PayloadError` otherwise).
        """
        if not isinstance(task_name, str) or not task_name:
            raise ValueError(f"task_name must be a non-empty string, got {task_name!r}")
        if not self.is_running:
            raise PlatformError("WorkerProcess.submit: the workers are not running; call start()")
        check_payload(task_name, args, kwargs, self._settings().payload_limit_bytes)
        return str(self._app().send_task(task_name, args=args, kwargs=kwargs).id)

    def queue_length(self) -> int:
        """Messages waiting in the app's default queue (all of kombu's priority lists)."""
        return queue_length(broker_queues(self._settings()), default_queue(self._app()))

    def completed_jobs(self) -> int:
        """Job runs in state ``succeeded`` in this mode's database.

        Only guarded tasks (``guarded_task``) record job runs, and each worker writes them in
        batches (its recorder flushes every 0.2 s), so a job just finished may take that long
        to be counted.
        """
        return completed_jobs(self._settings().active_database_url)

    # -- helpers -----------------------------------------------------------------------------

    def _settings(self) -> Settings:
        if self.settings is None:
            self.settings = load_settings()
        return self.settings

    def _app(self) -> Celery:
        if self.app is None:
            self.app = create_app(self._settings())
            self._owns_app = True
        return self.app
