"""The ``celery worker`` and ``celery beat`` programs of a platform app: truthful, and all
JSON in JSON mode.

Celery prints a banner, warnings and shutdown notes straight to the terminal, around the
logging pipeline. With ``SANDBOX_PLATFORM_LOG_FORMAT=json`` every line a worker or a beat
writes must parse as JSON, so these subclasses (installed by ``PlatformCelery.Worker`` /
``.Beat``):

* configure logging before Celery does anything (so the first lines, e.g. the egress-guard
  note at ``worker_init``, are already JSON) and route Python ``warnings`` (Celery's
  ``SecurityWarning``, ``CPendingDeprecationWarning``...) through logging;
* replace the banner with one ``celery worker starting`` / ``celery beat starting`` event
  carrying the same facts;
* write Celery's shutdown notes (``worker: Warm shutdown (MainProcess)``) as JSON events;
* send what task code prints to stdout/stderr through logging (``celery.redirected``).

The worker's event loop is :class:`~sandbox_platform.broker.hub.ReadyAwareHub` (kombu's hub,
which never sleeps in ``poll`` while callbacks are queued: see broker/hub.py), and ``--pool
threads`` runs the platform's threads pool (:mod:`sandbox_platform.app.thread_pool`), holding two
messages per thread (the running job's and the next one, as Dramatiq does).

In both formats the banner names the log level that is really in force (the platform's
``LOG_LEVEL``, which the platform's logging set-up applies whatever ``--loglevel`` says).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import sys
import threading
from datetime import UTC, datetime
from typing import Any

import click
import structlog
from celery import VERSION_BANNER, Celery
from celery.apps import worker as celery_worker
from celery.apps.beat import Beat
from celery.apps.worker import Worker
from celery.concurrency.thread import TaskPool as CeleryThreadPool
from celery.utils.log import LOG_LEVELS, LoggingProxy, get_logger

from sandbox_platform.app.thread_pool import PlatformThreadPool
from sandbox_platform.broker.hub import use_ready_aware_hub
from sandbox_platform.broker.versions import UNSUPPORTED
from sandbox_platform.core.apps import settings_of
from sandbox_platform.core.errors import SettingsError
from sandbox_platform.core.exits import settings_error_exit
from sandbox_platform.core.logging import configure_logging
from sandbox_platform.core.redaction import redact
from sandbox_platform.core.settings import Settings

__all__ = ["PlatformBeat", "PlatformWorker", "app_reference", "json_say", "startup_logging"]

log = structlog.get_logger("sandbox_platform.app.programs")

#: messages a threads worker holds per thread: the one running and the next one
THREADS_PREFETCH = 2


def startup_logging(settings: Settings) -> bool:
    """Configure logging now (not at Celery's ``setup_logging``); True in JSON mode, where
    Python warnings then go through logging too."""
    configure_logging(settings.log_format, settings.log_level, task_events=settings.log_task_events)
    json_mode = settings.log_format == "json"
    if json_mode:
        logging.captureWarnings(True)
        celery_worker.safe_say = json_say  # type: ignore[attr-defined]
    return json_mode


def app_reference(app: Celery) -> str:
    """The app as the command line named it: the ``-A``/``--app`` value of the running
    ``celery`` command (``shop_tasks``, ``shop_api:celery_app``; ``sandbox-platform worker
    --app X`` runs ``celery -A X worker``), else the app's ``main``.

    Celery keeps the ``-A`` value nowhere on the app (``app.main`` is the name the app was
    created with: ``create_app``'s ``"sandbox_platform"``); it is a parameter of the root
    click command, which is running while the worker and beat start.
    """
    context = click.get_current_context(silent=True)
    given = context.find_root().params.get("app") if context is not None else None
    if isinstance(given, str) and given.strip():
        return given.strip()
    return app.main or "__main__"


def json_say(msg: str, f: Any = sys.__stderr__) -> None:
    """Celery's ``safe_say`` as one JSON line: a raw ``os.write`` like the original, since it
    runs inside signal handlers where taking the logging lock could deadlock."""
    event = {
        "event": str(msg).strip(),
        "logger": "celery.apps.worker",
        "level": "warning",
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    # best effort, as Celery's: losing a note must not break a shutdown
    with contextlib.suppress(OSError, AttributeError, ValueError):
        os.write(f.fileno(), (json.dumps(redact(event)) + "\n").encode())


class LineLoggingProxy(LoggingProxy):
    """Celery's stdout/stderr proxy, but one log event per printed line (Celery's logs every
    ``write``: ``print("a", 1)`` would be three events)."""

    _lines = threading.local()

    def write(self, data: Any) -> int:  # type: ignore[override]
        text = str(data)
        pending: str = getattr(self._lines, "pending", "") + text
        *complete, rest = pending.split("\n")
        self._lines.pending = rest
        for line in complete:
            super().write(line)
        return len(text)

    def flush(self) -> None:
        rest: str = getattr(self._lines, "pending", "")
        self._lines.pending = ""
        if rest:
            super().write(rest)


def _level_number(settings: Settings) -> int:
    return int(LOG_LEVELS[settings.log_level])


class PlatformWorker(Worker):
    """``celery worker`` for a platform app (see the module's docstring)."""

    def on_before_init(self, quiet: bool = False, **kwargs: Any) -> None:
        if UNSUPPORTED is not None:
            settings_error_exit(SettingsError("installed packages", UNSUPPORTED))
        self._sp_json = startup_logging(settings_of(self.app))
        super().on_before_init(quiet=quiet, **kwargs)

    def on_after_init(self, *args: Any, **kwargs: Any) -> None:
        super().on_after_init(*args, **kwargs)
        self.loglevel = _level_number(settings_of(self.app))  # the level in force

    def on_init_blueprint(self) -> None:
        super().on_init_blueprint()
        use_ready_aware_hub(self)  # before the Hub step builds the event loop (broker/hub.py)
        me: Any = self
        if me.pool_cls is CeleryThreadPool:  # --pool threads: the platform's (app/thread_pool.py)
            me.pool_cls = PlatformThreadPool
            # a message waiting for every thread: no fetch round trip between two jobs
            me.prefetch_multiplier = max(int(me.prefetch_multiplier), THREADS_PREFETCH)

    def on_start(self) -> None:
        super().on_start()
        me: Any = self
        if self._sp_json:  # print() in task code -> JSON (whatever worker_redirect_stdouts)
            proxy = LineLoggingProxy(get_logger("celery.redirected"), me.redirect_stdouts_level)
            sys.stdout = sys.stderr = proxy

    def emit_banner(self) -> None:
        if not self._sp_json:
            super().emit_banner()
            return
        log.info("celery worker starting", **self.startup_facts())

    def startup_info(self, artlines: bool = True) -> str:
        """Celery's banner, naming the app as the command line did (not ``app.main``)."""
        info: str = super().startup_info(artlines=artlines)
        app = self.app
        named = f"{app.main or '__main__'}:{id(app):#x}"
        return info.replace(named, f"{app_reference(app)} ({id(app):#x})", 1)

    def startup_facts(self) -> dict[str, Any]:
        """What Celery's banner says, as fields."""
        app = self.app
        me: Any = self
        pool = me.pool_cls if isinstance(me.pool_cls, str) else me.pool_cls.__module__
        pool = "threads" if me.pool_cls is PlatformThreadPool else pool
        user_tasks = sorted(name for name in app.tasks if not name.startswith("celery."))
        return {
            "hostname": me.hostname,
            "pid": os.getpid(),
            "celery_version": VERSION_BANNER,
            "app": app_reference(app),
            "mode": settings_of(app).mode.value,
            "transport": app.connection().as_uri(),
            "results": app.backend.as_uri(),
            "concurrency": me.concurrency,
            "autoscale": list(me.autoscale) if me.autoscale else None,
            "pool": pool.split(".")[-1],
            "task_events": bool(me.task_events),
            "queues": sorted(app.amqp.queues.keys()),
            "tasks": user_tasks,
            "log_level": settings_of(app).log_level,
            "platform": platform.platform(),
        }


class PlatformBeat(Beat):
    """``celery beat`` for a platform app (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = settings_of(self.app)
        self.loglevel = _level_number(settings)  # the banner's level is the one in force
        self._sp_json = startup_logging(settings)
        if self._sp_json:
            self.quiet = True  # the banner becomes one JSON event (install_sync_handler)

    def install_sync_handler(self, service: Any) -> None:
        if self._sp_json:
            log.info("celery beat starting", **self.startup_facts(service))
        super().install_sync_handler(service)

    def startup_facts(self, service: Any) -> dict[str, Any]:
        """What Celery's beat banner says, as fields."""
        scheduler = service.get_scheduler(lazy=True)
        app: Any = self.app
        me: Any = self
        return {
            "pid": os.getpid(),
            "celery_version": VERSION_BANNER,
            "app": app_reference(app),
            "broker": app.connection().as_uri(),
            "loader": type(app.loader).__qualname__,
            "scheduler": f"{type(scheduler).__module__}.{type(scheduler).__qualname__}",
            "scheduler_info": " ".join(str(scheduler.info).split()),
            "max_interval": scheduler.max_interval,
            "logfile": me.logfile or "[stderr]",
            "log_level": settings_of(self.app).log_level,
        }
