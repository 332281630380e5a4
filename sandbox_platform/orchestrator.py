"""The seed's API (``SandboxOrchestrator`` and friends) as a thin facade over the real parts.

The seed brief (``BATCH_1_README.md``) described an in-process toy: a worker thread pool, an
in-memory governor, a dictionary of idempotency keys. This module keeps its names and call
shapes so the seed's quick start and integration example run as written (import path aside),
but every attribute is the real, distributed component:

=========================  =====================================================================
seed attribute             what it is here
=========================  =====================================================================
``dry_run_lock``           the runtime's :class:`~sandbox_platform.guards.dry_run.DryRunLock`
``governor``               the runtime's Redis token-bucket
                           :class:`~sandbox_platform.guards.governor.Governor`
``idempotency_manager``    :class:`~sandbox_platform.guards.idempotency.IdempotencyManager`
                           over the runtime's Redis idempotency store
``heartbeat``              the runtime's :class:`~sandbox_platform.heartbeat.Heartbeat`
``worker``                 :class:`WorkerProcess`: real ``celery -A workers worker`` processes
``readiness_checker``      :class:`~sandbox_platform.readiness.ReadinessChecker`
(no seed name)             ``beat_process``: a real ``celery -A beat beat`` driving the heartbeat
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

import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

from celery import Celery

from sandbox_platform.builtin_tasks import HEARTBEAT_TASK
from sandbox_platform.celery_app import create_app, forget_platform_settings
from sandbox_platform.db import migrate
from sandbox_platform.embedded import embedded_redis_running, stop_embedded_redis
from sandbox_platform.errors import PlatformError
from sandbox_platform.guards.dry_run import DryRunLock
from sandbox_platform.guards.governor import Governor
from sandbox_platform.guards.idempotency import IdempotencyManager
from sandbox_platform.guards.retry import RetryBackoffManager
from sandbox_platform.heartbeat import Heartbeat
from sandbox_platform.payload import check_payload
from sandbox_platform.readiness import ReadinessChecker
from sandbox_platform.redis_client import broker_redis, redis_url
from sandbox_platform.runtime import Runtime, installed_runtime, reset_runtime, set_runtime
from sandbox_platform.settings import ENV_PREFIX, Mode, Settings, load_settings
from sandbox_platform.status import completed_jobs, platform_status, queue_length
from sandbox_platform.workerproc import WorkerSubprocess

__all__ = [
    "BeatSubprocess",
    "DryRunLock",
    "Governor",
    "IdempotencyManager",
    "RetryBackoffManager",
    "SandboxOrchestrator",
    "WorkerProcess",
    "settings_env",
]

# kombu's Redis transport keeps one list per priority step: the plain queue name for priority
# 0 and "<queue>\x06\x16<step>" for the others (its default steps are 0, 3, 6, 9).

_READY_TIMEOUT = 60.0
_HEARTBEAT_TIMEOUT = 30.0


def settings_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """A child-process environment carrying ``settings`` as ``SANDBOX_PLATFORM_*`` variables.

    Starts from ``base`` (default: this process's environment) without any
    ``SANDBOX_PLATFORM_*`` variable, then sets one per setting that has a value. The Redis URL
    is always the resolved one, so a child finds the embedded server instead of starting one.
    """
    source = dict(os.environ if base is None else base)
    env = {k: v for k, v in source.items() if not k.startswith(ENV_PREFIX)}
    for name, value in settings:
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, Mode):
            text = value.value
        else:
            text = str(value)
        env[f"{ENV_PREFIX}{name.upper()}"] = text
    env[f"{ENV_PREFIX}REDIS_URL"] = redis_url(settings)
    return env


class BeatSubprocess(WorkerSubprocess):
    """One ``celery -A <module> beat`` subprocess (the platform's LeaderScheduler), by pid.

    It reuses :class:`~sandbox_platform.workerproc.WorkerSubprocess`'s start/stop/kill (own
    session, SIGTERM then SIGKILL of the process group); only the command differs. Beat
    answers no ping, so there is no ``wait_ready``: the heartbeat it drives is the proof.
    """

    def __init__(
        self,
        app_module: str = "beat",
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


def _not_initialized(what: str) -> PlatformError:
    return PlatformError(
        f"{what}: the sandbox is not initialized; call initialize() first "
        "(or use 'with SandboxOrchestrator() as sandbox:')"
    )


class WorkerProcess:
    """The seed's worker pool, as ``max_workers`` real ``celery worker`` processes.

    Each process runs ``celery -A <app_module> worker`` with the solo pool and the lean flags
    (``--without-gossip --without-mingle --without-heartbeat``): one consumer per process, as
    DESIGN.md's worker topology prescribes. They share the broker queue, so ``max_workers`` is
    the number of jobs that run at once.

    ``poll_interval`` is accepted for seed compatibility and stored, but it changes nothing:
    the Redis broker delivers by a blocking pop, so a worker never polls the queue, and the
    worker's liveness key is refreshed every half ``heartbeat_interval`` (a setting). There is
    no per-worker knob it could honestly map to.

    ``settings`` default to the environment (:func:`~sandbox_platform.settings.load_settings`);
    ``app`` is the Celery app used to ping the workers and publish jobs (default: one built
    from the settings with :func:`~sandbox_platform.celery_app.create_app` on :meth:`start`).
    """

    def __init__(
        self,
        poll_interval: float = 5.0,
        max_workers: int = 4,
        *,
        app_module: str = "workers",
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

    def start(self, timeout: float = _READY_TIMEOUT) -> WorkerProcess:
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
        ``payload_limit_bytes`` (:class:`~sandbox_platform.errors.PayloadError` otherwise).
        """
        if not isinstance(task_name, str) or not task_name:
            raise ValueError(f"task_name must be a non-empty string, got {task_name!r}")
        if not self.is_running:
            raise PlatformError("WorkerProcess.submit: the workers are not running; call start()")
        check_payload(task_name, args, kwargs, self._settings().payload_limit_bytes)
        return str(self._app().send_task(task_name, args=args, kwargs=kwargs).id)

    def queue_length(self) -> int:
        """Messages waiting in the app's default queue (all of kombu's priority lists)."""
        return queue_length(
            broker_redis(self._settings()), str(self._app().conf.task_default_queue)
        )

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
        app_module: str = "workers",
        beat: bool = True,
        beat_module: str = "beat",
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
        rt = Runtime.build(settings)
        self._runtime = rt
        set_runtime(rt)
        self._app = create_app(settings)
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
        rt, self._runtime = self._runtime, None
        if rt is not None:
            if installed_runtime() is rt:
                reset_runtime()  # flushes and closes it
            else:  # another orchestrator installed its own since; leave that one alone
                rt.close()
        if self._app is not None:
            self._app.close()
            self._app = None
        if self._settings is not None:
            # create_app remembered these settings for the process; once the temp dir is gone
            # they would make a later runtime() restart a redis-server in it. Forget them.
            forget_platform_settings(self._settings)
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
            raise _not_initialized("settings")
        return self._settings

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None or not self.initialized:
            raise _not_initialized("runtime")
        return self._runtime

    @property
    def app(self) -> Celery:
        if self._app is None or not self.initialized:
            raise _not_initialized("app")
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
            raise _not_initialized("idempotency_manager")
        return self._idempotency

    @property
    def worker(self) -> WorkerProcess:
        if self._worker is None or not self.initialized:
            raise _not_initialized("worker")
        return self._worker

    @property
    def readiness_checker(self) -> ReadinessChecker:
        if self._readiness is None:
            raise _not_initialized("readiness_checker")
        return self._readiness

    def _rt(self, what: str) -> Runtime:
        if self._runtime is None or not self.initialized:
            raise _not_initialized(what)
        return self._runtime

    # -- status ------------------------------------------------------------------------------

    def is_ready(self) -> bool:
        """The readiness report's verdict: True only on GO."""
        return bool(self.readiness_checker.is_ready())

    def get_status(self) -> dict[str, Any]:
        """One snapshot in the seed's shape, read from the real components."""
        return platform_status(self.runtime, self.app, self.readiness_checker)


def _read_pid(path: Path, timeout: float = 2.0) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            time.sleep(0.02)
    return None
