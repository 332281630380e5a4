"""The per-process services every guard shares, built once from the settings.

One Redis client, one governor, one idempotency store, one admitter, one recorder and one
dry-run lock per process; rebuilt in a forked child. Nothing is built at import time.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import redis

from sandbox_platform.alert_wiring import build_dispatcher, wire_alert_sources
from sandbox_platform.alerts import AlertDispatcher
from sandbox_platform.db.models import DryRunEvent
from sandbox_platform.guards.admission import Admitter
from sandbox_platform.guards.dry_run import DryRunLock
from sandbox_platform.guards.governor import Governor
from sandbox_platform.guards.idempotency import IdempotencyStore
from sandbox_platform.heartbeat import Heartbeat
from sandbox_platform.hooks import fire_intercepted
from sandbox_platform.recorder import Recorder
from sandbox_platform.redis_client import get_redis, redis_url
from sandbox_platform.settings import Settings

__all__ = [
    "Runtime",
    "flush_runtime",
    "installed_runtime",
    "reset_runtime",
    "runtime",
    "set_runtime",
]


@dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis
    governor: Governor
    idempotency: IdempotencyStore
    admitter: Admitter
    recorder: Recorder
    dry_run_lock: DryRunLock
    heartbeat: Heartbeat
    alerts: AlertDispatcher

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        client = get_redis(redis_url(settings))
        prefix = settings.key_prefix
        recorder = Recorder(settings.active_database_url)

        def record_dry_run(event: dict[str, Any]) -> None:
            recorder.add(DryRunEvent, **event)

        alerts = build_dispatcher(settings, client)
        wire_alert_sources(alerts)
        return cls(
            settings=settings,
            redis=client,
            governor=Governor(client, prefix),
            idempotency=IdempotencyStore(client, prefix),
            admitter=Admitter(client, prefix),
            recorder=recorder,
            dry_run_lock=DryRunLock(
                settings.mode, sink=record_dry_run, on_intercept=fire_intercepted
            ),
            heartbeat=Heartbeat(
                client,
                interval_seconds=settings.heartbeat_interval,
                prefix=prefix,
                database_url=settings.active_database_url,
            ),
            alerts=alerts,
        )

    def close(self) -> None:
        self.recorder.close()
        self.alerts.close(timeout=5)


_lock = threading.Lock()
_runtime: Runtime | None = None
_pid = os.getpid()


def runtime() -> Runtime:
    """This process's runtime, built from the platform settings on first use."""
    global _runtime, _pid
    current = _runtime
    if current is not None and _pid == os.getpid():
        return current
    with _lock:
        if _runtime is None or _pid != os.getpid():
            from sandbox_platform.celery_app import platform_settings

            _runtime = Runtime.build(platform_settings())
            _pid = os.getpid()
        return _runtime


def set_runtime(value: Runtime | None) -> None:
    """Install a runtime (the facade and tests build their own)."""
    global _runtime, _pid
    with _lock:
        _runtime = value
        _pid = os.getpid()


def installed_runtime() -> Runtime | None:
    """The runtime this process has installed or built, without building one."""
    return _runtime if _pid == os.getpid() else None


def flush_runtime() -> None:
    """Write what this process's runtime has buffered (warm shutdown); build nothing."""
    current = _runtime
    if current is not None and _pid == os.getpid():
        current.recorder.flush()
        current.alerts.flush(timeout=5)


def reset_runtime() -> None:
    """Flush and forget this process's runtime."""
    global _runtime
    with _lock:
        if _runtime is not None and _pid == os.getpid():
            _runtime.close()
        _runtime = None
