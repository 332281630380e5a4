"""Alerts, at the import path the README documents::

    from sandbox_platform.alerts import AlertDispatcher, Severity, WebhookSink

A re-export only: the alerts live in :mod:`sandbox_platform.ops.alerts`.
"""

from sandbox_platform.ops.alerts import (
    THROTTLE_LUA,
    Alert,
    AlertDispatcher,
    DatabaseSink,
    LogSink,
    MemorySink,
    Severity,
    Sink,
    Subscription,
    Throttle,
    ThrottleDecision,
    WebhookSink,
    connect_retry_exhaustion,
    slack_payload,
)

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
