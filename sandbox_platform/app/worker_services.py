"""What runs beside the consumer in each worker process: liveness and the beat watchdog.

Started on ``worker_ready`` and stopped on ``worker_shutdown`` (see :mod:`.signals`). The
liveness key (TTL interval + 1) tells readiness and the status page this worker is alive;
the watchdog raises one critical alert across the cluster when beat's heartbeat goes
stale and one info alert when it recovers.
"""

from __future__ import annotations

import threading
from typing import Any

import structlog
from celery import Celery

from sandbox_platform.app.runtime import Runtime
from sandbox_platform.ops.alerts import Severity
from sandbox_platform.ops.limits import apply_default_limits
from sandbox_platform.ops.watchdog import BeatWatchdog

__all__ = ["WorkerServices", "start_worker_services", "stop_worker_services"]

log = structlog.get_logger(__name__)


class WorkerServices:
    """The liveness key, the beat watchdog, and the declared governor limits, kept up."""

    def __init__(self, rt: Runtime, hostname: str, app: Celery | None = None) -> None:
        self.rt = rt
        self.app = app
        self.hostname = hostname
        self.interval = rt.settings.heartbeat_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._touch_loop, name="sandbox-platform-liveness", daemon=True
        )
        self.watchdog = BeatWatchdog(
            rt.heartbeat,
            rt.redis,
            alert=self._alert,
            prefix=rt.settings.key_prefix,
            name=hostname,
            startup_grace_seconds=rt.settings.heartbeat_grace,
        )

    def _alert(self, severity: str, kind: str, message: str, context: dict[str, Any]) -> None:
        self.rt.alerts.alert(Severity.parse(severity), kind, message, **context)

    def _touch_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.rt.heartbeat.touch_worker(self.hostname, self.interval + 1)
            except Exception:
                log.exception("worker liveness update failed", worker=self.hostname)
            self._restore_limits()
            self._stop.wait(self.interval / 2)

    def _restore_limits(self) -> None:
        """Limits declared in code that Redis lost (a restart without persistence) are set
        again, with a warning alert: a resource never runs without its limit."""
        if self.app is None:
            return
        try:
            restored = apply_default_limits(self.app, self.rt.governor)
        except Exception:
            log.exception("could not check the declared governor limits")
            return
        if restored:
            self.rt.alerts.alert(
                Severity.WARNING,
                "governor_limits_restored",
                f"governor limits were missing in Redis and were set again: {', '.join(restored)}",
                key=",".join(restored),
                resources=restored,
            )

    def start(self) -> None:
        self._thread.start()
        self.watchdog.start(self.interval / 2)
        log.info("worker services started", worker=self.hostname, interval=self.interval)

    def stop(self) -> None:
        self._stop.set()
        self.watchdog.stop()
        self._thread.join(timeout=5)


def start_worker_services(hostname: str, app: Celery, runtime: Runtime) -> WorkerServices:
    """Apply the app's declared limits and start its side services (the caller keeps them:
    ``worker_ready`` puts them on the app)."""
    applied = apply_default_limits(app, runtime.governor)
    if applied:
        log.info("default governor limits applied", resources=applied)
    services = WorkerServices(runtime, hostname, app)
    services.start()
    runtime.recorder.start()  # drains the run-record outbox (db/outbox.py) from now on
    return services


def stop_worker_services(services: WorkerServices | None) -> None:
    if services is not None:
        services.stop()
