"""The dispatcher: throttle, then fan an alert out to every subscribed sink."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError

from sandbox_platform.core.context import current_correlation_id
from sandbox_platform.core.redis_client import REDIS_ERRORS
from sandbox_platform.guards import retry

from ._model import Alert, Severity
from ._sinks import MemorySink, Sink
from ._throttle import Throttle

__all__ = ["AlertDispatcher", "Subscription", "connect_retry_exhaustion"]

#: failures of a service a sink writes to (database, Redis, network), not bugs in a sink
OPERATIONAL_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, *REDIS_ERRORS, OSError)


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:500]


log = structlog.get_logger("sandbox_platform.alerts")


@dataclass(frozen=True)
class Subscription:
    sink: Sink
    min_severity: Severity = Severity.INFO
    kinds: frozenset[str] | None = None

    def accepts(self, alert: Alert) -> bool:
        if alert.severity < self.min_severity:
            return False
        return self.kinds is None or alert.kind in self.kinds


class AlertDispatcher:
    """Send alerts to sinks, throttling repeated ones.

    An alert is throttled when it has a ``key``, or its kind is in ``throttled_kinds``
    (then with key ``""``), unless ``emit(..., throttle=False)``. Without a ``throttle`` the
    dispatcher throttles in process with a 60 s window; pass ``Throttle(redis_client)`` to
    hold the window across the cluster. A failing sink is logged and the others still run.
    """

    def __init__(
        self,
        *,
        throttle: Throttle | None = None,
        throttled_kinds: Iterable[str] = (),
        history_size: int = 200,
    ) -> None:
        self.throttle = throttle if throttle is not None else Throttle(None)
        self.throttled_kinds = frozenset(throttled_kinds)
        self.history = MemorySink(history_size)
        self._lock = threading.Lock()
        self._subscriptions: list[Subscription] = []
        self._counts = {"emitted": 0, "throttled": 0, "sink_errors": 0}

    def subscribe(
        self,
        sink: Sink,
        min_severity: Severity | str = Severity.INFO,
        kinds: Iterable[str] | None = None,
    ) -> Subscription:
        """Deliver alerts of at least ``min_severity`` (and of ``kinds``, if given) to ``sink``."""
        if not callable(getattr(sink, "send", None)):
            raise TypeError(f"an alert sink needs a send(alert) method: {sink!r}")
        subscription = Subscription(
            sink, Severity.parse(min_severity), None if kinds is None else frozenset(kinds)
        )
        with self._lock:
            self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, sink: Sink) -> bool:
        with self._lock:
            before = len(self._subscriptions)
            self._subscriptions = [s for s in self._subscriptions if s.sink is not sink]
            return len(self._subscriptions) != before

    @property
    def sinks(self) -> list[Sink]:
        with self._lock:
            return [s.sink for s in self._subscriptions]

    def _throttled(self, alert: Alert, throttle: bool | None) -> bool:
        if throttle is None:
            return alert.key is not None or alert.kind in self.throttled_kinds
        return throttle

    def emit(self, alert: Alert, *, throttle: bool | None = None) -> bool:
        """Dispatch ``alert``; False when throttling held it back.

        ``throttle``: None decides from the alert (key or throttled kind); True/False force.
        """
        if self._throttled(alert, throttle):
            decision = self.throttle.check(alert.kind, alert.key)
            if not decision.send:
                with self._lock:
                    self._counts["throttled"] += 1
                return False
            if decision.suppressed:
                alert = dataclasses.replace(alert, suppressed=decision.suppressed)
        with self._lock:
            self._counts["emitted"] += 1
            subscriptions = list(self._subscriptions)
        self.history.send(alert)
        for subscription in subscriptions:
            if not subscription.accepts(alert):
                continue
            try:
                subscription.sink.send(alert)
            except Exception as exc:
                with self._lock:
                    self._counts["sink_errors"] += 1
                fields = {
                    "sink": type(subscription.sink).__name__,
                    "kind": alert.kind,
                    "severity": alert.severity.label,
                    "correlation_id": alert.correlation_id,
                }
                if isinstance(exc, OPERATIONAL_ERRORS):  # a service down: one line suffices
                    log.error("alert_sink_failed", error=_one_line(exc), **fields)
                else:  # a bug: keep the traceback
                    log.exception("alert_sink_failed", **fields)
        return True

    def alert(
        self,
        severity: Severity | str,
        kind: str,
        message: str,
        *,
        key: str | None = None,
        throttle: bool | None = None,
        **context: Any,
    ) -> bool:
        """Build and emit an alert; ``context`` keywords become its (redacted) context."""
        return self.emit(
            Alert(Severity.parse(severity), kind, message, context, key=key), throttle=throttle
        )

    def alert_count(self) -> int:
        """Alerts dispatched by this dispatcher (throttled ones not counted)."""
        return self.history.count()

    def recent(self, n: int = 20) -> list[Alert]:
        """The ``n`` most recently dispatched alerts, newest first."""
        return self.history.recent(n)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Flush every sink that buffers (webhooks); False if any timed out."""
        ok = True
        for sink in self.sinks:
            flush: Callable[[float | None], bool] | None = getattr(sink, "flush", None)
            if flush is not None:
                ok = bool(flush(timeout)) and ok
        return ok

    def close(self, timeout: float | None = 10.0) -> None:
        """Close every sink that can be closed; errors are logged."""
        for sink in self.sinks:
            close: Callable[[float | None], object] | None = getattr(sink, "close", None)
            if close is None:
                continue
            try:
                close(timeout)
            except Exception:
                log.exception("alert_sink_close_failed", sink=type(sink).__name__)


def connect_retry_exhaustion(
    dispatcher: AlertDispatcher,
    hooks: retry.ExhaustedHooks,
    *,
    throttle_per_task: bool = False,
) -> Callable[[], None]:
    """Emit an ERROR ``task_failed`` alert whenever a retry policy that fires ``hooks`` gives
    up (an app's runtime hooks, or a manager's own).

    Idempotent per dispatcher and hooks. With ``throttle_per_task`` the alert's key is the task
    name, so a failing task alerts once per throttle window. Returns a function that
    disconnects.
    """
    uid = f"sandbox_platform.alerts.connect_retry_exhaustion:{id(dispatcher)}"

    def on_exhausted(event: retry.ExhaustedEvent) -> None:
        context: dict[str, Any] = dict(event.context)
        context.update(task=event.name, attempts=event.attempts, error=event.error)
        if event.task_id is not None:
            context["task_id"] = event.task_id
        dispatcher.emit(
            Alert(
                Severity.ERROR,
                "task_failed",
                f"{event.name} failed after {event.attempts} attempts: {event.error}",
                context,
                correlation_id=event.correlation_id or current_correlation_id(),
                key=event.name if throttle_per_task else None,
            )
        )

    hooks.on(on_exhausted, uid=uid)

    def disconnect() -> None:
        hooks.off(uid=uid)

    return disconnect
