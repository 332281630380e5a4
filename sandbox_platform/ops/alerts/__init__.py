"""Alerts: severities, a dispatcher, sinks (log, database, webhook, memory) and throttling.

::

    dispatcher = AlertDispatcher(throttle=Throttle(redis_client, window_seconds=60))
    dispatcher.subscribe(LogSink())
    dispatcher.subscribe(DatabaseSink(settings.database_url), min_severity="warning")
    dispatcher.subscribe(WebhookSink(slack_url, slack=True), min_severity=Severity.ERROR)
    connect_retry_exhaustion(dispatcher)          # final failures -> "task_failed" alerts

    dispatcher.alert("warning", "queue_backlog", "queue is deep", key="default", depth=9000)

Every alert's message and context are redacted before any sink sees them. Alerts with a
``key`` (or of a kind listed in ``throttled_kinds``) go out once per window across every
process sharing the Redis; the next one sent carries ``suppressed``, the count held back.

This is a package rather than one module to keep one concept per file; the import path
``sandbox_platform.ops.alerts`` is the public one, the ``_`` modules are private.
"""

from __future__ import annotations

from ._dispatcher import AlertDispatcher, Subscription, connect_retry_exhaustion
from ._model import Alert, Severity
from ._sinks import DatabaseSink, LogSink, MemorySink, Sink
from ._throttle import THROTTLE_LUA, Throttle, ThrottleDecision
from ._webhook import WebhookSink, slack_payload

__all__ = [
    "THROTTLE_LUA",
    "Alert",
    "AlertDispatcher",
    "DatabaseSink",
    "LogSink",
    "MemorySink",
    "Severity",
    "Sink",
    "Subscription",
    "Throttle",
    "ThrottleDecision",
    "WebhookSink",
    "connect_retry_exhaustion",
    "slack_payload",
]
