"""The process's alert dispatcher, built from the settings, and the events that feed it.

Sinks: structured log (every alert), database table (every alert), webhook (from
``alert_min_severity`` up, when ``SANDBOX_PLATFORM_ALERT_WEBHOOK_URL`` is set). Sources, all
subscribed to the guards' event bus: a job's final failure (error ``task_failed``), poison
quarantine (error), governor deferrals (info ``governor_denied``; warning
``governor_wait_exceeded`` once the governor keeps a job waiting longer than
``governor_wait_alert_seconds``; both throttled per resource), dry-run intercepts (info,
throttled per action), an unreachable admission Redis (critical), plus in-process
retry exhaustion (:class:`~sandbox_platform.guards.retry.RetryBackoffManager`) and whatever
calls :meth:`AlertDispatcher.alert` (the heartbeat watchdog, readiness).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import redis

from sandbox_platform.core.settings import Settings
from sandbox_platform.guards.events import (
    AdmissionUnavailable,
    DryRunIntercepted,
    Events,
    GovernorDenied,
    JobDeadLettered,
    ResultNotStored,
)
from sandbox_platform.guards.retry import ExhaustedHooks
from sandbox_platform.ops.alerts import (
    Alert,
    AlertDispatcher,
    DatabaseSink,
    LogSink,
    Severity,
    Throttle,
    WebhookSink,
    connect_retry_exhaustion,
)

__all__ = [
    "THROTTLED_KINDS",
    "build_dispatcher",
    "governor_denial_alert",
    "readiness_alerter",
    "wire_alert_sources",
]

THROTTLED_KINDS = (
    "governor_denied",
    "governor_wait_exceeded",
    "dry_run_intercepted",
    "redis_unreachable",
)
_UID = "sandbox_platform.alerts"


def build_dispatcher(settings: Settings, client: redis.Redis) -> AlertDispatcher:
    throttle = Throttle(
        client, window_seconds=settings.alert_throttle_seconds, prefix=settings.key_prefix
    )
    dispatcher = AlertDispatcher(throttle=throttle, throttled_kinds=THROTTLED_KINDS)
    dispatcher.subscribe(LogSink())
    dispatcher.subscribe(DatabaseSink(settings.active_database_url))
    if settings.alert_webhook_url:
        dispatcher.subscribe(
            WebhookSink(settings.alert_webhook_url, slack=settings.alert_webhook_slack),
            min_severity=Severity.parse(settings.alert_min_severity),
        )
    return dispatcher


def wire_alert_sources(
    dispatcher: AlertDispatcher,
    events: Events,
    retry_hooks: ExhaustedHooks,
    *,
    governor_wait_alert_seconds: float,
) -> None:
    """Subscribe ``dispatcher`` to ``events`` and to the app's exhausted retries (replacing an
    earlier wiring of the same bus). ``governor_wait_alert_seconds``: the settings' bound
    past which a governor deferral is a warning (:func:`governor_denial_alert`)."""
    connect_retry_exhaustion(dispatcher, retry_hooks)
    events.subscribe(JobDeadLettered, _dead_lettered(dispatcher), uid=f"{_UID}.dead_lettered")
    denied = _denied(dispatcher, governor_wait_alert_seconds)
    events.subscribe(GovernorDenied, denied, uid=f"{_UID}.denied")
    events.subscribe(DryRunIntercepted, _intercepted(dispatcher), uid=f"{_UID}.intercepted")
    events.subscribe(AdmissionUnavailable, _unavailable(dispatcher), uid=f"{_UID}.unavailable")
    events.subscribe(ResultNotStored, _not_stored(dispatcher), uid=f"{_UID}.not_stored")


def _dead_lettered(dispatcher: AlertDispatcher) -> Callable[[JobDeadLettered], None]:
    def on_event(event: JobDeadLettered) -> None:
        if event.reason == "poison":
            dispatcher.alert(
                Severity.ERROR,
                "poison_quarantined",
                f"{event.task}: {event.detail}",
                task=event.task,
                task_id=event.task_id,
                **event.context,
            )
        elif event.failed:
            context: dict[str, Any] = {"reason": event.reason, **event.context}
            context.update(task=event.task, attempts=event.attempts, error=event.detail)
            if event.task_id:
                context["task_id"] = event.task_id
            message = f"{event.task} failed after {event.attempts} attempts: {event.detail}"
            alert = Alert(Severity.ERROR, "task_failed", message, context)
            if event.correlation_id:
                alert = dataclasses.replace(alert, correlation_id=event.correlation_id)
            dispatcher.emit(alert)

    return on_event


def governor_denial_alert(event: GovernorDenied, bound_seconds: float) -> Alert:
    """The alert for one governor deferral: info ``governor_denied`` (a burst being paced),
    or warning ``governor_wait_exceeded`` when the job will have been kept waiting longer
    than ``bound_seconds`` by the time it runs again (the wait since its first deferral plus
    the wait it is re-queued for). One alert per deferral, throttled per resource: the
    dispatcher's one throttle round trip, never two."""
    kept = event.waited_seconds + event.wait_seconds
    context: dict[str, Any] = {
        "task": event.task,
        "resource": event.resource,
        "wait_seconds": round(event.wait_seconds, 3),
    }
    if kept <= bound_seconds:
        message = f"governor denied {event.task} on {event.resource!r}; re-queued"
        return Alert(Severity.INFO, "governor_denied", message, context, key=event.resource)
    context.update(
        waited_seconds=round(event.waited_seconds, 3),
        kept_waiting_seconds=round(kept, 3),
        bound_seconds=bound_seconds,
    )
    message = (
        f"governor resource {event.resource!r} keeps jobs waiting: {event.task} waited "
        f"{event.waited_seconds:.1f}s and was re-queued for {event.wait_seconds:.1f}s more "
        f"({kept:.1f}s), over the {bound_seconds:g}s bound (GOVERNOR_WAIT_ALERT_SECONDS)"
    )
    return Alert(Severity.WARNING, "governor_wait_exceeded", message, context, key=event.resource)


def _denied(dispatcher: AlertDispatcher, bound_seconds: float) -> Callable[[GovernorDenied], None]:
    def alert(event: GovernorDenied) -> None:
        dispatcher.emit(governor_denial_alert(event, bound_seconds))

    return alert


def _intercepted(dispatcher: AlertDispatcher) -> Callable[[DryRunIntercepted], None]:
    def alert(event: DryRunIntercepted) -> None:
        record = event.record
        dispatcher.alert(
            Severity.INFO,
            "dry_run_intercepted",
            f"sandbox intercepted irreversible action {record['action']!r}",
            key=str(record["action"]),
            action=record["action"],
            function=record["function"],
            task_id=record.get("task_id"),
        )

    return alert


def _unavailable(dispatcher: AlertDispatcher) -> Callable[[AdmissionUnavailable], None]:
    def alert(event: AdmissionUnavailable) -> None:
        dispatcher.alert(
            Severity.CRITICAL,
            "redis_unreachable",
            f"governor Redis unreachable: {event.error}",
            key="governor",
            task=event.task,
        )

    return alert


def _not_stored(dispatcher: AlertDispatcher) -> Callable[[ResultNotStored], None]:
    def alert(event: ResultNotStored) -> None:
        dispatcher.alert(
            Severity.ERROR,
            "result_not_stored",
            f"{event.task}: idempotency result not stored in {event.record_key!r}: {event.error}",
            key=event.record_key,
            task=event.task,
            task_id=event.task_id,
            record_key=event.record_key,
        )

    return alert


def readiness_alerter(dispatcher: AlertDispatcher) -> Callable[[Any], None]:
    """An ``on_no_go`` for :class:`~sandbox_platform.ops.readiness.ReadinessChecker`: one
    critical alert per NO-GO report."""

    def alert(report: Any) -> None:
        dispatcher.alert(
            Severity.CRITICAL,
            "readiness_no_go",
            f"readiness NO-GO: {', '.join(report.reasons)}",
            key="readiness",
            reasons=list(report.reasons),
        )

    return alert
