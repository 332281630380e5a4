"""The process's alert dispatcher, built from the settings, and what feeds it.

Sinks: structured log (every alert), database table (every alert), webhook (from
``alert_min_severity`` up, when ``SANDBOX_PLATFORM_ALERT_WEBHOOK_URL`` is set). Sources: a
task's final failure (error), governor denials (warning, throttled per resource), dry-run
intercepts (info, throttled per action), and whatever calls :meth:`AlertDispatcher.alert`
(the heartbeat watchdog, readiness, poison quarantine, Redis outages).
"""

from __future__ import annotations

from typing import Any

import redis

from sandbox_platform.alerts import (
    AlertDispatcher,
    DatabaseSink,
    LogSink,
    Severity,
    Throttle,
    WebhookSink,
    connect_retry_exhaustion,
)
from sandbox_platform.hooks import on_denied, on_intercepted
from sandbox_platform.settings import Settings

__all__ = ["alert_readiness_no_go", "build_dispatcher", "wire_alert_sources"]

THROTTLED_KINDS = ("governor_denied", "dry_run_intercepted", "redis_unreachable")


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


def wire_alert_sources(dispatcher: AlertDispatcher) -> None:
    """Connect the platform's events to ``dispatcher`` (replacing an earlier wiring)."""
    connect_retry_exhaustion(dispatcher)

    def denied(task_name: str, resource: str, wait_seconds: float) -> None:
        dispatcher.alert(
            Severity.WARNING,
            "governor_denied",
            f"governor denied {task_name} on {resource!r}; re-queued",
            key=resource,
            task=task_name,
            resource=resource,
            wait_seconds=round(wait_seconds, 3),
        )

    def intercepted(event: dict[str, Any]) -> None:
        dispatcher.alert(
            Severity.INFO,
            "dry_run_intercepted",
            f"sandbox intercepted irreversible action {event['action']!r}",
            key=str(event["action"]),
            action=event["action"],
            function=event["function"],
            task_id=event.get("task_id"),
        )

    on_denied(denied, uid="sandbox_platform.alerts.denied")
    on_intercepted(intercepted, uid="sandbox_platform.alerts.intercepted")


def alert_readiness_no_go(report: Any) -> None:
    """A critical alert for a NO-GO readiness report (``on_no_go`` of ReadinessChecker)."""
    from sandbox_platform.runtime import runtime

    runtime().alerts.alert(
        Severity.CRITICAL,
        "readiness_no_go",
        f"readiness NO-GO: {', '.join(report.reasons)}",
        key="readiness",
        reasons=list(report.reasons),
    )
