"""The seed's API (``SandboxOrchestrator`` and friends) as a thin facade over the real parts.

The seed brief (the project's first brief; its examples are kept in ``tests/seed_examples/``)
described an in-process toy: a worker thread pool, an in-memory governor, a dictionary of
idempotency keys. This module keeps its names and call shapes so the seed's quick start and
integration example run as written (import path aside), but every attribute is the real,
distributed component:

=========================  =====================================================================
seed attribute             what it is here
=========================  =====================================================================
``dry_run_lock``           the runtime's :class:`~sandbox_platform.guards.dry_run.DryRunLock`
``governor``               the runtime's Redis token-bucket
                           :class:`~sandbox_platform.coordination.governor.Governor`
``idempotency_manager``    :class:`~sandbox_platform.coordination.idempotency.IdempotencyManager`
                           over the runtime's Redis idempotency store
``heartbeat``              the runtime's :class:`~sandbox_platform.ops.heartbeat.Heartbeat`
``worker``                 :class:`WorkerProcess`: real ``celery -A <app> worker`` processes
``readiness_checker``      :class:`~sandbox_platform.ops.readiness.ReadinessChecker`
(no seed name)             ``beat_process``: a real ``celery -A <app> beat`` driving the heartbeat
=========================  =====================================================================

Nothing is implemented twice: this module only wires settings, migrations, the runtime, the
Celery app and worker subprocesses together, and reads their state for :meth:`get_status`.

::

    with SandboxOrchestrator() as sandbox:          # temp dir, SQLite, embedded redis-server
        sandbox.governor.set_limit("payment", 100, 3600)
        allowed, msg = sandbox.governor.check_limit("payment")
        task_id = sandbox.worker.submit("workers.charge_card", "order-1", 1000)
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

from celery import Celery

from sandbox_platform.app.builtin_tasks import HEARTBEAT_TASK
from sandbox_platform.app.factory import create_app, release_app
from sandbox_platform.app.runtime import Runtime, runtime_for
from sandbox_platform.coordination.governor import Governor
from sandbox_platform.coordination.idempotency import IdempotencyManager
from sandbox_platform.core.embedded import embedded_redis_running, stop_embedded_redis
from sandbox_platform.core.errors import PlatformError
from sandbox_platform.core.live_requirements import EXAMPLE_APP
from sandbox_platform.core.redis_client import redis_url
from sandbox_platform.core.settings import Mode, Settings, load_settings
from sandbox_platform.db import migrate
from sandbox_platform.facade.workers import WorkerProcess, not_initialized
from sandbox_platform.guards.dry_run import DryRunLock
from sandbox_platform.ops.heartbeat import Heartbeat
from sandbox_platform.ops.readiness import ReadinessChecker
from sandbox_platform.ops.status import platform_status
from sandbox_platform.procs.beat import BeatSubprocess
from sandbox_platform.procs.env import settings_env

__all__ = ["SandboxOrchestrator"]

_HEARTBEAT_TIMEOUT = 30.0


class SandboxOrchestrator:
    """The whole platform in one object: settings, database, runtime, app, workers, readiness.

    ``use_memory_db=True`` (the default) means throw-away local state, not an in-process
    database: :meth:`initialize` creates a temporary directory holding a SQLite sandbox
    database file (not ``:memory:``: the real worker processes must share it) and, unless
    ``SANDBOX_PLATFORM_REDIS_URL`` is set, an embedded ``redis-server`` listening on a Unix
    socket in that directory; the mode is sandbox. :meth:`cleanup` removes all of it. With
    ``use_memory_db=False`` the settings come from the environment; ``settings`` given
    explicitly win over both.

    :meth:`initialize` migrates the database, installs this process's runtime, builds the
    Celery app, starts a real ``celery -A <beat_module> beat`` (the platform's LeaderScheduler,
    unless ``beat=False``) and ``workers`` real ``celery -A <app_module> worker`` processes,
    waits until each worker answers a ping, then records a first heartbeat by sending the
    built-in heartbeat task through a worker and waiting until it is recorded (so readiness
    does not wait for beat's first slot). From then on beat keeps the heartbeat fresh, one tick
    per ``heartbeat_interval``. With ``beat=False`` nothing does: two intervals later the
    heartbeat is stale (``heartbeat.is_healthy()`` False, readiness NO-GO ``BEAT_STALE``)
    unless a beat runs elsewhere against the same Redis (``sandbox-platform beat``).

    Two orchestrators on one Redis database share the broker queue, so their workers would
    take each other's jobs: give each its own Redis (the embedded one does).
    """

    def __init__(
        self,
        use_memory_db: bool = True,
        *,
        settings: Settings | None = None,
        workers: int = 1,
        app_module: str = EXAMPLE_APP,
        beat: bool = True,
        beat_module: str = EXAMPLE_APP,
    ) -> None:
        if not isinstance(use_memory_db, bool):
            raise ValueError(f"use_memory_db must be True or False, got {use_memory_db!r}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an int >= 1, got {workers!r}")
        if settings is not None and not isinstance(settings, Settings):
            raise ValueError(f"settings must be a Settings object, got {type(settings).__name__}")
        if not isinstance(app_module, str) or not app_module:
            raise ValueError(f"app_module must be a non-empty module name, got {app_module!r}")
        self.use_memory_db = use_memory_db
        self.workers = workers
        self.app_module = app_module
        self.beat = bool(beat)
        self.beat_module = beat_module
        self.beat_process: BeatSubprocess | None = None
        self._given_settings = settings
        self._settings: Settings | None = None
        self._runtime: Runtime | None = None
        self._app: Celery | None = None
        self._worker: WorkerProcess | None = None
        self._idempotency: IdempotencyManager | None = None
        self._readiness: ReadinessChecker | None = None
        self._temp_dir: Path | None = None
        self._started_redis_in: Path | None = None
        self.embedded_redis_pid: int | None = None
        self.redis_url: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return self._readiness is not None

    def initialize(self) -> SandboxOrchestrator:
        """Bring everything up (see the class docstring). Idempotent; returns ``self``."""
        if self.initialized:
            return self
        try:
            self._initialize()
        except BaseException:
            self.cleanup()
            raise
        return self

    def _initialize(self) -> None:
        self._temp_dir = Path(tempfile.mkdtemp(prefix="sandbox-platform-"))
        self.beat_process = None
        self.embedded_redis_pid = None
        settings = self._build_settings(self._temp_dir)
        self._settings = settings
        if settings.redis_url is None:
            self._started_redis_in = (
                None if embedded_redis_running(settings.data_dir) else settings.data_dir
            )
        self.redis_url = redis_url(settings)  # starts the embedded server when needed
        if self._started_redis_in is not None:
            self.embedded_redis_pid = _read_pid(settings.data_dir / "redis.pid")
        migrate.upgrade(settings.active_database_url)
        self._app = create_app(settings)
        rt = self._runtime = runtime_for(self._app)
        self._idempotency = IdempotencyManager(rt.idempotency)
        self._worker = WorkerProcess(
            max_workers=self.workers,
            app_module=self.app_module,
            settings=settings,
            app=self._app,
            log_dir=self._temp_dir,
        )
        if self.beat:
            self.beat_process = BeatSubprocess(
                self.beat_module,
                env=settings_env(settings),
                log_path=self._temp_dir / "beat.log",
                schedule_path=self._temp_dir / "beat-schedule",
            )
            self.beat_process.start()
        self._worker.start()
        if self.beat_process is not None and not self.beat_process.alive():
            raise PlatformError(
                f"celery beat ({self.beat_module}) exited at start:\n"
                + self.beat_process.log_text()[-2000:]
            )
        self._first_heartbeat(rt.heartbeat, self._app)
        self._readiness = ReadinessChecker(settings, self._app)

    def _build_settings(self, temp_dir: Path) -> Settings:
        if self._given_settings is not None:
            return self._given_settings
        if not self.use_memory_db:
            return load_settings()
        overrides: dict[str, Any] = {
            "mode": Mode.SANDBOX,
            "data_dir": temp_dir,
            "database_url": f"sqlite:///{temp_dir / 'sandbox.sqlite3'}",
            "live_database_url": None,
        }
        return load_settings(**overrides)

    def _first_heartbeat(self, heartbeat: Heartbeat, app: Celery) -> None:
        before = heartbeat.tick_count()
        tick_id = f"facade:{uuid.uuid4().hex}"
        app.send_task(HEARTBEAT_TASK, kwargs={"tick_id": tick_id})
        deadline = time.monotonic() + _HEARTBEAT_TIMEOUT
        while heartbeat.tick_count() <= before or heartbeat.last_tick_age() is None:
            if time.monotonic() > deadline:
                raise PlatformError(
                    f"the workers did not record the first heartbeat ({tick_id}) within "
                    f"{_HEARTBEAT_TIMEOUT:g}s"
                )
            time.sleep(0.05)

    def cleanup(self) -> None:
        """Stop the workers by pid, flush and drop the runtime, stop the embedded Redis this
        object started, remove the temporary directory. Safe to call twice."""
        self._readiness = None
        if self.beat_process is not None:
            self.beat_process.stop()
        if self._worker is not None:
            self._worker.stop()
        self._runtime = None
        if self._app is not None:
            # flushes and closes its runtime; forgets its settings and dry-run lock, which
            # would otherwise restart a redis-server in the removed temporary directory
            release_app(self._app)
            self._app = None
        if self._started_redis_in is not None:
            stop_embedded_redis(self._started_redis_in)
            self._started_redis_in = None
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def __enter__(self) -> SandboxOrchestrator:
        return self.initialize()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    # -- the seed's attributes ---------------------------------------------------------------

    @property
    def started_pids(self) -> list[int]:
        """Process ids this object started: workers, beat, the embedded redis-server.

        Kept after :meth:`cleanup`, so a caller can check that every one of them is gone.
        """
        pids = list(self._worker.pids) if self._worker is not None else []
        if self.beat_process is not None and self.beat_process.process is not None:
            pids.append(self.beat_process.pid)
        if self.embedded_redis_pid is not None:
            pids.append(self.embedded_redis_pid)
        return pids

    @property
    def settings(self) -> Settings:
        if self._settings is None or not self.initialized:
            raise not_initialized("settings")
        return self._settings

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None or not self.initialized:
            raise not_initialized("runtime")
        return self._runtime

    @property
    def app(self) -> Celery:
        if self._app is None or not self.initialized:
            raise not_initialized("app")
        return self._app

    @property
    def dry_run_lock(self) -> DryRunLock:
        return self._rt("dry_run_lock").dry_run_lock

    @property
    def governor(self) -> Governor:
        return self._rt("governor").governor

    @property
    def heartbeat(self) -> Heartbeat:
        return self._rt("heartbeat").heartbeat

    @property
    def idempotency_manager(self) -> IdempotencyManager:
        if self._idempotency is None or not self.initialized:
            raise not_initialized("idempotency_manager")
        return self._idempotency

    @property
    def worker(self) -> WorkerProcess:
        if self._worker is None or not self.initialized:
            raise not_initialized("worker")
        return self._worker

    @property
    def readiness_checker(self) -> ReadinessChecker:
        if self._readiness is None:
            raise not_initialized("readiness_checker")
        return self._readiness

    def _rt(self, what: str) -> Runtime:
        if self._runtime is None or not self.initialized:
            raise not_initialized(what)
        return self._runtime

    # -- status ------------------------------------------------------------------------------

    def is_ready(self) -> bool:
        """The readiness report's verdict: True only on GO."""
        return bool(self.readiness_checker.is_ready())

    def get_status(self) -> dict[str, Any]:
        """One snapshot in the seed's shape, read from the real components."""
        rt = self.runtime
        return platform_status(rt.settings, self.app, rt.redis, self.readiness_checker)


def _read_pid(path: Path, timeout: float = 2.0) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            time.sleep(0.02)
    return None
