"""A governor deferral is an info alert; a warning only once the governor keeps a job waiting
longer than ``GOVERNOR_WAIT_ALERT_SECONDS`` (the wait since its first deferral plus the wait it
is re-queued for), throttled per resource like the info one."""

from __future__ import annotations

import pytest

from sandbox_platform.core.settings import load_settings
from sandbox_platform.guards.events import Events, GovernorDenied
from sandbox_platform.guards.retry import ExhaustedHooks
from sandbox_platform.ops.alert_wiring import (
    THROTTLED_KINDS,
    governor_denial_alert,
    wire_alert_sources,
)
from sandbox_platform.ops.alerts import AlertDispatcher, MemorySink, Severity, Throttle


def _denied(resource: str = "payments", wait: float = 0.2, waited: float = 0.0) -> GovernorDenied:
    return GovernorDenied(
        "t.pay", "id-1", None, resource=resource, wait_seconds=wait, waited_seconds=waited
    )


def test_a_deferral_within_the_bound_is_info() -> None:
    alert = governor_denial_alert(_denied(wait=0.2, waited=59.0), 60.0)
    assert (alert.severity, alert.kind, alert.key) == (Severity.INFO, "governor_denied", "payments")
    assert alert.context == {"task": "t.pay", "resource": "payments", "wait_seconds": 0.2}


@pytest.mark.parametrize(
    ("waited", "wait"),
    [(61.0, 0.2), (0.0, 90.0), (50.0, 11.0)],  # waited past it; re-queued past it; both
)
def test_a_job_kept_waiting_past_the_bound_is_a_warning_naming_resource_wait_and_bound(
    waited: float, wait: float
) -> None:
    alert = governor_denial_alert(_denied(wait=wait, waited=waited), 60.0)
    assert (alert.severity, alert.kind, alert.key) == (
        Severity.WARNING,
        "governor_wait_exceeded",
        "payments",
    )
    assert alert.context["resource"] == "payments"
    assert alert.context["kept_waiting_seconds"] == pytest.approx(waited + wait)
    assert alert.context["bound_seconds"] == 60.0
    assert "'payments'" in alert.message and "60s bound" in alert.message


def test_the_bound_is_a_setting_defaulting_to_a_minute() -> None:
    assert load_settings().governor_wait_alert_seconds == 60.0
    assert load_settings(governor_wait_alert_seconds=1.5).governor_wait_alert_seconds == 1.5
    for bad in (0, -1, float("inf")):
        with pytest.raises(Exception, match="GOVERNOR_WAIT_ALERT_SECONDS"):
            load_settings(governor_wait_alert_seconds=bad)


def test_the_wired_bus_sends_one_alert_per_kind_and_resource_per_window() -> None:
    dispatcher = AlertDispatcher(
        throttle=Throttle(None, window_seconds=60), throttled_kinds=THROTTLED_KINDS
    )
    sink = MemorySink()
    dispatcher.subscribe(sink)
    events = Events()
    wire_alert_sources(dispatcher, events, ExhaustedHooks(), governor_wait_alert_seconds=1.0)
    for _ in range(5):
        events.emit(_denied(wait=0.2))  # a burst being paced
        events.emit(_denied(wait=0.2, waited=3.0))  # jobs kept waiting
        events.emit(_denied(resource="email", wait=0.2))
    assert sorted((a.kind, a.severity.label, a.key) for a in sink.alerts) == [
        ("governor_denied", "info", "email"),
        ("governor_denied", "info", "payments"),
        ("governor_wait_exceeded", "warning", "payments"),
    ]
