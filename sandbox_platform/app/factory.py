"""The Celery app factory: the platform's configuration, its guards, its built-in tasks.

The configuration is :func:`~sandbox_platform.broker.celery_config.celery_config` (JSON only,
late acks, prefetch 1, the visibility timeout from settings, ...). Every signal receiver is
connected in :mod:`sandbox_platform.app.signals`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

from celery import Celery

from sandbox_platform.app.builtin_tasks import register_builtin_tasks
from sandbox_platform.app.programs import PlatformBeat, PlatformWorker
from sandbox_platform.app.runtime import broker_hooks, forget_runtime, runtime_for
from sandbox_platform.app.signals import connect_signals
from sandbox_platform.broker.celery_config import celery_config
from sandbox_platform.broker.hooks import HOOKS_OPTION
from sandbox_platform.broker.transport import ADMIT_OPTION
from sandbox_platform.broker.versions import UNSUPPORTED
from sandbox_platform.core.apps import register_app, unregister_app
from sandbox_platform.core.context import stamp_mode
from sandbox_platform.core.redis_client import celery_url
from sandbox_platform.core.settings import Settings, load_settings
from sandbox_platform.guards.base import Guard
from sandbox_platform.guards.builtin import BUILTIN_GUARDS
from sandbox_platform.guards.dry_run import DryRunLock
from sandbox_platform.integrations.tracing import install_tracing

__all__ = ["PlatformCelery", "create_app", "release_app"]


class PlatformCelery(Celery):
    """A Celery app that knows its platform settings and its guards; its queues are
    qualified with its mode and every message it publishes carries that mode."""

    amqp_cls = "sandbox_platform.broker.queues:ModeAMQP"
    platform_settings: Settings
    platform_guards: tuple[Guard, ...]

    def send_task(self, name: str, *args: Any, **options: Any) -> Any:
        headers = dict(options.get("headers") or {})
        stamp_mode(headers, self.platform_settings.mode.value)
        options["headers"] = headers
        return super().send_task(name, *args, **options)

    def close(self) -> None:
        """Close the app; code outside any job no longer considers it (core/apps.py)."""
        unregister_app(self)
        super().close()

    @cached_property
    def Worker(self) -> Any:
        """``celery worker``: all JSON in JSON mode, a truthful banner (app/programs.py)."""
        return self.subclass_with_self(PlatformWorker)

    @cached_property
    def Beat(self) -> Any:
        """``celery beat``: all JSON in JSON mode, a truthful banner (app/programs.py)."""
        return self.subclass_with_self(PlatformBeat)


def create_app(
    settings: Settings | None = None,
    *,
    main: str = "sandbox_platform",
    guards: Sequence[Guard] = (),
) -> Celery:
    """Build a Celery app configured from ``settings`` (read from the environment if None).

    ``guards`` are added to the built-in ones; each guard's ``order`` places it among them
    (built-ins use 10..60; a guard without one runs after them).
    """
    for guard in guards:
        if not isinstance(guard, Guard):
            raise TypeError(f"create_app(guards=...) takes Guard objects, got {guard!r}")
    settings = settings or load_settings()
    app = PlatformCelery(main, set_as_current=True)
    app.platform_settings = settings
    app.platform_guards = (*BUILTIN_GUARDS, *guards)
    app.config_from_object(celery_config(settings))
    # beat: one leader among any number of beats, the platform's schedule beside the app's
    app.conf.beat_scheduler = "sandbox_platform.app.beat_scheduler:LeaderScheduler"
    _install_safe_consuming(app, settings)
    register_builtin_tasks(app)
    connect_signals()
    install_tracing(settings)  # after connect_signals: the job's id is bound before a run span

    register_app(app, settings, _lock_of(weakref.ref(app)))
    return app


def _lock_of(ref: weakref.ref[Celery]) -> Callable[[], DryRunLock]:
    """How code outside any job reaches the app's dry-run lock (without keeping it alive)."""

    def lock() -> DryRunLock:
        app = ref()
        if app is None:
            raise RuntimeError("the app was garbage-collected")
        return runtime_for(app).dry_run_lock

    return lock


def _install_safe_consuming(app: Celery, settings: Settings) -> None:
    """Our consumer (a malformed message is dead-lettered, never fatal) and, for a Redis
    broker, our transport (:mod:`sandbox_platform.broker.transport`). When the coordination
    keys live in the broker's Redis database (the default), the transport admits jobs with
    the fetch (no admission round trip of its own) and stores idempotency results with the
    acknowledgement."""
    app.conf.worker_consumer = "sandbox_platform.app.consumer:SafeConsumer"
    broker = str(app.conf.broker_url)
    if broker.split("://", 1)[0] not in ("redis", "rediss"):
        return
    if UNSUPPORTED is not None:  # kombu's stock channel; a worker refuses to start
        return
    app.conf.broker_transport = "sandbox_platform.broker.transport:Transport"
    if broker == celery_url(str(app.conf.sandbox_platform_redis_url)):
        options = dict(app.conf.broker_transport_options or {})
        options[ADMIT_OPTION] = settings.key_prefix
        options[HOOKS_OPTION] = broker_hooks(app)  # this app's guards meet its channels
        app.conf.broker_transport_options = options


def release_app(app: Celery) -> None:
    """Close ``app`` and its runtime in this process (flushing what it buffered); code
    outside any job no longer considers it."""
    forget_runtime(app)
    unregister_app(app)
    app.close()
