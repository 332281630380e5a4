"""The per-process runtime: the one place that builds the parts and hands them down.

For each platform app, once per process (rebuilt in a forked child): one Redis client, the
event bus, the recorder, the alert dispatcher subscribed to the events, the dry-run lock, the
heartbeat, the governor and idempotency store, and the guard pipeline bound to all of it.
Lower layers never fetch these: the pipeline hands them to every guard, the app hands the
lock to ``irreversible``. Nothing is built at import time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import Celery

from sandbox_platform.broker.hooks import BrokerHooks
from sandbox_platform.coordination.governor import Governor
from sandbox_platform.coordination.idempotency import IdempotencyStore
from sandbox_platform.core.jobscope import current_job, in_child_of_job
from sandbox_platform.core.redis_client import get_redis, redis_url
from sandbox_platform.core.settings import Settings, load_settings
from sandbox_platform.db.models import DryRunEvent, EnqueueDuplicate, JobRun
from sandbox_platform.db.outbox import RunOutbox
from sandbox_platform.db.recorder import Recorder
from sandbox_platform.guards.base import Guard, Services
from sandbox_platform.guards.builtin import BUILTIN_GUARDS
from sandbox_platform.guards.dry_run import DryRunLock
from sandbox_platform.guards.events import DryRunIntercepted, Events
from sandbox_platform.guards.pipeline import Pipeline
from sandbox_platform.guards.retry import ExhaustedHooks
from sandbox_platform.ops.alert_wiring import build_dispatcher, wire_alert_sources
from sandbox_platform.ops.alerts import AlertDispatcher
from sandbox_platform.ops.heartbeat import Heartbeat
from sandbox_platform.ops.metrics import Metrics
from sandbox_platform.ops.unlimited_resources import UnlimitedResourceWatch

__all__ = [
    "Runtime",
    "built_runtime",
    "flush_runtime",
    "forget_runtime",
    "reset_runtime",
    "runtime_for",
]


@dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis
    events: Events
    recorder: Recorder
    alerts: AlertDispatcher
    dry_run_lock: DryRunLock
    heartbeat: Heartbeat
    metrics: Metrics
    governor: Governor
    idempotency: IdempotencyStore
    pipeline: Pipeline
    #: what this app's exhausted retries call (its alert dispatcher is connected)
    retry_hooks: ExhaustedHooks
    #: the process that built it (a forked child builds its own)
    pid: int = field(default_factory=os.getpid)
    closed: bool = False

    @classmethod
    def build(
        cls,
        settings: Settings,
        guards: Sequence[Guard] = BUILTIN_GUARDS,
        hooks: BrokerHooks | None = None,
    ) -> Runtime:
        client = get_redis(redis_url(settings))
        prefix = settings.key_prefix
        events = Events()
        recorder = Recorder(settings.active_database_url)
        recorder.drain = RunOutbox(
            client,
            prefix,
            settings.mode.value,
            lambda rows: recorder.insert_new(JobRun, rows),
            write_duplicates=lambda rows: recorder.insert_new(EnqueueDuplicate, rows),
        ).drain
        alerts = build_dispatcher(settings, client)
        retry_hooks = ExhaustedHooks()
        wire_alert_sources(
            alerts,
            events,
            retry_hooks,
            governor_wait_alert_seconds=settings.governor_wait_alert_seconds,
        )
        metrics = Metrics(client, prefix)
        metrics.subscribe(events)
        governor = Governor(client, prefix)
        UnlimitedResourceWatch(governor, alerts).subscribe(events)
        lock = _dry_run_lock(settings, recorder, events)
        services = Services(
            settings=settings,
            redis=client,
            events=events,
            recorder=recorder,
            dry_run_lock=lock,
            broker=hooks if hooks is not None else BrokerHooks(),
        )
        return cls(
            settings=settings,
            redis=client,
            events=events,
            recorder=recorder,
            alerts=alerts,
            dry_run_lock=lock,
            heartbeat=Heartbeat(
                client,
                interval_seconds=settings.heartbeat_interval,
                prefix=prefix,
                database_url=settings.active_database_url,
            ),
            metrics=metrics,
            governor=governor,
            idempotency=IdempotencyStore(client, prefix),
            pipeline=Pipeline(guards, services),
            retry_hooks=retry_hooks,
        )

    def flush(self) -> None:
        """Write what is buffered (warm shutdown)."""
        self.recorder.flush()
        self.metrics.flush()
        self.alerts.flush(timeout=5)

    def close(self) -> None:
        self.closed = True
        self.recorder.close()
        self.metrics.close()
        self.alerts.close(timeout=5)


def _dry_run_lock(settings: Settings, recorder: Recorder, events: Events) -> DryRunLock:
    def record(event: dict[str, Any]) -> None:
        if in_child_of_job():  # a process task code started: it may exit right after
            recorder.write_now(DryRunEvent, **event)
        else:
            recorder.add(DryRunEvent, **event)

    def announce(event: dict[str, Any]) -> None:
        job = current_job()
        task = job.task_name if job is not None else ""
        events.emit(
            DryRunIntercepted(task, event.get("task_id"), event.get("correlation_id"), record=event)
        )

    return DryRunLock(settings.mode, sink=record, on_intercept=announce)


# -- one runtime per app and process ------------------------------------------------------------

_ATTRIBUTE = "_sp_runtime"
_lock = threading.Lock()
#: every runtime built (with the pid that built it): a pool child's exit flushes them (its
#: signal names no app), and tests reset them all; each app finds its own on the app itself
_built: list[Runtime] = []


def _slot(app: Celery) -> Runtime | None:
    current: Runtime | None = app.__dict__.get(_ATTRIBUTE)
    if current is not None and current.pid == os.getpid() and not current.closed:
        return current
    return None


def runtime_for(app: Celery) -> Runtime:
    """The runtime of ``app`` in this process, built on first use from the app's settings
    (``create_app``'s; the environment's for a plain Celery app) and guards."""
    current = _slot(app)
    if current is not None:
        return current
    with _lock:
        current = _slot(app)
        if current is None:
            settings = getattr(app, "platform_settings", None) or load_settings()
            guards = getattr(app, "platform_guards", BUILTIN_GUARDS)
            current = Runtime.build(settings, guards, broker_hooks(app))
            _built[:] = [*_mine(), current]  # a forked child forgets its parent's
            app.__dict__[_ATTRIBUTE] = current
        return current


def broker_hooks(app: Celery) -> BrokerHooks:
    """``app``'s side of the transport (broker/hooks.py): one per app, made on first use."""
    hooks = app.__dict__.get(_HOOKS_ATTRIBUTE)
    if not isinstance(hooks, BrokerHooks):
        with _hooks_lock:  # not _lock: runtime_for asks for the hooks while holding it
            hooks = app.__dict__.get(_HOOKS_ATTRIBUTE)
            if not isinstance(hooks, BrokerHooks):
                hooks = app.__dict__[_HOOKS_ATTRIBUTE] = BrokerHooks()
    return hooks


#: where an app keeps its broker hooks
_HOOKS_ATTRIBUTE = "_sp_broker_hooks"
_hooks_lock = threading.Lock()


def built_runtime(app: Celery) -> Runtime | None:
    """``app``'s runtime if this process has built it; builds nothing."""
    return _slot(app)


def _mine() -> list[Runtime]:
    pid = os.getpid()
    return [runtime for runtime in _built if runtime.pid == pid]


def flush_runtime() -> None:
    """Write what every runtime of this process has buffered; build nothing."""
    for current in _mine():
        current.flush()


def forget_runtime(app: Celery) -> None:
    """Flush, close and forget ``app``'s runtime in this process (if built)."""
    with _lock:
        current = _slot(app)
        app.__dict__.pop(_ATTRIBUTE, None)
        if current is not None and current in _built:
            _built.remove(current)
    if current is not None:
        current.close()


def reset_runtime() -> None:
    """Flush, close and forget every runtime of this process (tests, the seed facade)."""
    with _lock:
        closing = _mine()
        _built.clear()
    for current in closing:
        current.close()
