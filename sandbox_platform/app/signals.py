"""Every Celery signal receiver of the platform, connected in one place.

Receivers are module-level functions connected with ``weak=False`` and a ``dispatch_uid`` by
:func:`connect_signals`, so they cannot be garbage-collected away nor connected twice. They
find the app they serve through the signal's sender (a task, a consumer or a worker), never
through a process-wide "worker app": what a worker process starts for its app (the egress
guard, the side services) is kept on that app. ``worker_shutting_down`` names only the
worker's hostname, so ``worker_init`` connects a receiver for that worker (with its app).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import structlog
from celery import Celery, signals
from celery.app.task import Task
from celery.utils.saferepr import saferepr

from sandbox_platform.app.live_gate import check_live_worker, check_secret_keys
from sandbox_platform.app.rejects import dead_letter_message, record_expired
from sandbox_platform.app.runtime import built_runtime, flush_runtime, runtime_for
from sandbox_platform.app.worker_services import start_worker_services, stop_worker_services
from sandbox_platform.broker.versions import UNSUPPORTED, warn_stock_channel
from sandbox_platform.coordination.poison import held_task_ids, mark_clean_restores
from sandbox_platform.core.apps import settings_of
from sandbox_platform.core.context import (
    ADMITTED_HEADER,
    CORRELATION_HEADER,
    DELIVERY_HEADER,
    ENQUEUED_HEADER,
    current_correlation_id,
    new_correlation_id,
    request_header,
    set_correlation_id,
)
from sandbox_platform.core.errors import SettingsError
from sandbox_platform.core.logging import configure_logging, logging_configured
from sandbox_platform.core.propagation import install_context_propagation
from sandbox_platform.core.redaction import redact
from sandbox_platform.core.redis_client import reset_clients
from sandbox_platform.core.settings import load_settings
from sandbox_platform.db.engine import dispose_engines
from sandbox_platform.guards.egress import install_egress_guard

__all__ = ["connect_signals"]

log = structlog.get_logger(__name__)

#: what a worker process started for its app, kept on the app
_EGRESS = "_sp_egress_guard"
_SERVICES = "_sp_worker_services"


def _app_of(sender: Any) -> Celery | None:
    app = getattr(sender, "app", None)
    return app if isinstance(app, Celery) else None


def _on_setup_logging(**_kwargs: Any) -> None:
    """Celery configures logging unless a receiver is connected. The platform's worker and
    beat programs configured it already, from their app's settings (app/programs.py); any
    other Celery program of a process with a platform app gets the environment's."""
    if logging_configured():
        return
    try:
        settings = load_settings()
    except SettingsError:
        return  # the program reports its own settings error
    configure_logging(settings.log_format, settings.log_level, task_events=settings.log_task_events)


def _on_before_task_publish(
    body: Any = None, headers: dict[str, Any] | None = None, **_kwargs: Any
) -> None:
    if headers is None:
        return
    if UNSUPPORTED is not None:
        warn_stock_channel()
    if not headers.get(CORRELATION_HEADER):
        headers[CORRELATION_HEADER] = current_correlation_id() or new_correlation_id()
    headers[ENQUEUED_HEADER] = time.time()
    headers.pop(ADMITTED_HEADER, None)  # only the transport sets these, on delivery
    headers.pop(DELIVERY_HEADER, None)
    _redact_reprs(body, headers)


def _redact_reprs(body: Any, headers: dict[str, Any]) -> None:
    """Task events (Flower) and logs show ``argsrepr``/``kwargsrepr``: never raw secrets."""
    if "argsrepr" not in headers or not isinstance(body, list | tuple) or len(body) < 2:
        return
    args, kwargs = body[0], body[1]
    headers["argsrepr"] = saferepr(redact(list(args) if isinstance(args, tuple) else args))
    headers["kwargsrepr"] = saferepr(redact(kwargs))


#: the caller's correlation id and log fields, saved while an eager ``apply()`` runs
_eager_saved: ContextVar[tuple[tuple[str | None, dict[str, Any]], ...]] = ContextVar(
    "sp_eager_saved", default=()
)


def _eager(task: Task[Any, Any] | None) -> bool:
    return task is not None and bool(getattr(task.request, "is_eager", False))


def _on_task_prerun(task_id: str = "", task: Task[Any, Any] | None = None, **_k: Any) -> None:
    if task is None:
        structlog.contextvars.clear_contextvars()
        return
    correlation_id = request_header(task.request, CORRELATION_HEADER)
    if _eager(task):  # run in the caller's context: keep its id, restore it afterwards
        saved = (current_correlation_id(), structlog.contextvars.get_contextvars())
        _eager_saved.set((*_eager_saved.get(), saved))
        correlation_id = correlation_id or saved[0]
    else:
        structlog.contextvars.clear_contextvars()
    set_correlation_id(correlation_id or new_correlation_id())
    structlog.contextvars.bind_contextvars(
        task_id=task_id,
        task_name=task.name,
        attempt=int(getattr(task.request, "retries", 0) or 0) + 1,
    )


def _on_task_postrun(task: Task[Any, Any] | None = None, **_kwargs: Any) -> None:
    saved = _eager_saved.get()
    structlog.contextvars.clear_contextvars()
    if _eager(task) and saved:
        (previous, fields), rest = saved[-1], saved[:-1]
        _eager_saved.set(rest)
        structlog.contextvars.bind_contextvars(**fields)
        set_correlation_id(previous)
        return
    set_correlation_id(None)


def _on_task_unknown(sender: Any = None, message: Any = None, exc: Any = None, **_k: Any) -> None:
    dead_letter_message(_app_of(sender), "unknown_task", message, exc)


def _on_task_rejected(sender: Any = None, message: Any = None, exc: Any = None, **_k: Any) -> None:
    dead_letter_message(_app_of(sender), "rejected", message, exc)


def _on_task_revoked(
    sender: Any = None, request: Any = None, expired: bool = False, **_k: Any
) -> None:
    """An expired job is not run; it is recorded and counted, not only logged."""
    app = _app_of(sender)
    if not expired or request is None or app is None:
        return
    try:
        record_expired(runtime_for(app), request)
    except Exception:
        log.exception("could not record an expired job")


def _on_worker_process_init(**_kwargs: Any) -> None:
    dispose_engines()
    reset_clients()


def _on_worker_init(sender: Any = None, **_kwargs: Any) -> None:
    app = _app_of(sender)
    if app is None:
        return
    settings = settings_of(app)
    check_secret_keys(settings, app)
    check_live_worker(settings, app, lambda: runtime_for(app).alerts)
    install_context_propagation()
    guard = install_egress_guard(
        settings, lambda: runtime_for(app).dry_run_lock, app.__dict__.get(_EGRESS)
    )
    app.__dict__[_EGRESS] = guard
    if guard is not None:
        log.info("sandbox egress guard on", egress_mode=settings.egress_mode)
    hostname = str(getattr(sender, "hostname", "") or "")
    signals.worker_shutting_down.connect(
        _shutting_down_receiver(app, hostname),
        weak=False,
        dispatch_uid=f"sandbox_platform.shutting_down.{hostname}.{id(app)}",
    )


def _on_worker_ready(sender: Any = None, **_kwargs: Any) -> None:
    app = _app_of(sender)
    if app is None:
        return
    settings = settings_of(app)
    hostname = str(getattr(sender, "hostname", None) or socket.gethostname())
    log.info("worker ready", hostname=hostname, pid=os.getpid(), mode=settings.mode.value)
    if app.__dict__.get(_SERVICES) is None:
        app.__dict__[_SERVICES] = start_worker_services(hostname, app, runtime_for(app))


def _shutting_down_receiver(app: Celery, hostname: str) -> Callable[..., None]:
    """Before the consumer of ``hostname`` stops: mark the jobs kombu is about to hand back
    as clean restores (a warm shutdown's hand-back is not a poison delivery)."""

    def receiver(sender: Any = None, **_kwargs: Any) -> None:
        runtime = built_runtime(app)
        if runtime is None or (hostname and sender != hostname):
            return
        try:
            marked = mark_clean_restores(
                runtime.redis, runtime.settings.key_prefix, held_task_ids()
            )
            log.info("warm shutdown: held jobs marked as clean restores", jobs=marked)
        except Exception:
            log.exception("could not mark held jobs before shutdown")

    return receiver


def _on_worker_shutdown(sender: Any = None, **_kwargs: Any) -> None:
    """Warm shutdown: stop the side services, write every buffered record."""
    app = _app_of(sender)
    services = app.__dict__.pop(_SERVICES, None) if app is not None else None
    stop_worker_services(services)
    flush_runtime()


def _on_worker_process_shutdown(**_kwargs: Any) -> None:
    flush_runtime()


_RECEIVERS = (
    (signals.setup_logging, _on_setup_logging),
    (signals.before_task_publish, _on_before_task_publish),
    (signals.task_prerun, _on_task_prerun),
    (signals.task_postrun, _on_task_postrun),
    (signals.worker_process_init, _on_worker_process_init),
    (signals.task_unknown, _on_task_unknown),
    (signals.task_revoked, _on_task_revoked),
    (signals.task_rejected, _on_task_rejected),
    (signals.worker_init, _on_worker_init),
    (signals.worker_ready, _on_worker_ready),
    (signals.worker_shutdown, _on_worker_shutdown),
    (signals.worker_process_shutdown, _on_worker_process_shutdown),
)


def connect_signals() -> None:
    """Connect every receiver once, strongly referenced, each with its own dispatch_uid."""
    for signal, receiver in _RECEIVERS:
        signal.connect(receiver, weak=False, dispatch_uid=f"sandbox_platform.{receiver.__name__}")
