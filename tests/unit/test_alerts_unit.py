"""Alerts without external services: model, redaction, dispatcher routing, in-process throttle."""

from __future__ import annotations

import json

import pytest
from structlog.testing import capture_logs

from sandbox_platform import alerts
from sandbox_platform.core.context import bind_correlation_id
from sandbox_platform.core.errors import RetryExhausted
from sandbox_platform.guards.retry import ExhaustedEvent, RetryBackoffManager
from sandbox_platform.ops.alerts import (
    Alert,
    AlertDispatcher,
    LogSink,
    MemorySink,
    Severity,
    Throttle,
    WebhookSink,
    connect_retry_exhaustion,
    slack_payload,
)


def test_public_api_is_exported() -> None:
    for name in alerts.__all__:
        assert hasattr(alerts, name), name


# -- Severity / Alert ------------------------------------------------------------------------


def test_severity_orders_and_parses() -> None:
    assert Severity.INFO < Severity.WARNING < Severity.ERROR < Severity.CRITICAL
    assert Severity.parse("error") is Severity.ERROR
    assert Severity.parse(" WARN ") is Severity.WARNING
    assert Severity.parse(50) is Severity.CRITICAL
    assert Severity.parse(Severity.INFO) is Severity.INFO
    assert str(Severity.ERROR) == "error"


@pytest.mark.parametrize("bad", ["loud", "", 7, True])
def test_severity_parse_rejects_unknown_with_choices(bad: object) -> None:
    with pytest.raises(ValueError, match="expected one of info, warning, error, critical"):
        Severity.parse(bad)  # type: ignore[arg-type]


def test_alert_redacts_context_and_message_and_takes_correlation_id() -> None:
    with bind_correlation_id("cid-abc"):
        alert = Alert(
            Severity.ERROR,
            "charge_failed",
            "call failed with Authorization: Bearer abc.def.ghi",
            {
                "api_key": "sk_live_123",
                "url": "https://user:hunter2@pay.example/x",
                "nested": {"password": "p"},
                "obj": object(),
            },
        )
    assert alert.correlation_id == "cid-abc"
    assert "abc.def.ghi" not in alert.message
    assert alert.context["api_key"] == "***"
    assert "hunter2" not in alert.context["url"]
    assert alert.context["nested"]["password"] == "***"
    assert isinstance(alert.context["obj"], str)  # JSON-safe for every sink
    json.dumps(alert.to_dict())


def test_alert_validates_kind_and_severity() -> None:
    with pytest.raises(ValueError, match="kind must be a non-empty string"):
        Alert(Severity.INFO, " ", "m")
    with pytest.raises(ValueError, match="unknown alert severity"):
        Alert("bad", "k", "m")  # type: ignore[arg-type]
    assert Alert("warning", "k", "m").severity is Severity.WARNING  # type: ignore[arg-type]


# -- dispatcher ------------------------------------------------------------------------------


def test_subscriptions_filter_by_severity_and_kind() -> None:
    dispatcher = AlertDispatcher()
    everything, errors, only_heartbeat = MemorySink(), MemorySink(), MemorySink()
    dispatcher.subscribe(everything)
    dispatcher.subscribe(errors, min_severity="error")
    dispatcher.subscribe(only_heartbeat, kinds={"heartbeat_stale"})
    dispatcher.alert("info", "deploy", "hello")
    dispatcher.alert(Severity.CRITICAL, "heartbeat_stale", "beat is silent")
    assert [a.kind for a in everything.alerts] == ["deploy", "heartbeat_stale"]
    assert [a.kind for a in errors.alerts] == ["heartbeat_stale"]
    assert [a.kind for a in only_heartbeat.alerts] == ["heartbeat_stale"]
    assert dispatcher.alert_count() == 2
    assert [a.kind for a in dispatcher.recent(1)] == ["heartbeat_stale"]


def test_a_failing_sink_is_logged_and_others_still_receive() -> None:
    class Broken:
        def send(self, alert: Alert) -> None:
            raise RuntimeError("sink down")

    dispatcher = AlertDispatcher()
    good = MemorySink()
    dispatcher.subscribe(Broken())
    dispatcher.subscribe(good)
    with capture_logs() as logs:
        assert dispatcher.alert("error", "x", "y") is True
    assert good.count() == 1
    [failure] = [e for e in logs if e["event"] == "alert_sink_failed"]
    assert failure["log_level"] == "error"
    assert failure["exc_info"] is True
    assert failure["sink"] == "Broken"
    assert dispatcher.stats()["sink_errors"] == 1


def test_subscribe_rejects_non_sink() -> None:
    with pytest.raises(TypeError, match="send"):
        AlertDispatcher().subscribe(object())  # type: ignore[arg-type]


def test_log_sink_logs_at_severity_level_with_fields() -> None:
    dispatcher = AlertDispatcher()
    dispatcher.subscribe(LogSink())
    with capture_logs() as logs, bind_correlation_id("cid-log"):
        dispatcher.alert("critical", "db_down", "database unreachable", token="t0k3n")
        dispatcher.alert("warning", "slow", "slow queue")
    entries = [e for e in logs if e["event"] == "alert"]
    assert [(e["log_level"], e["kind"], e["severity"]) for e in entries] == [
        ("critical", "db_down", "critical"),
        ("warning", "slow", "warning"),
    ]
    assert entries[0]["correlation_id"] == "cid-log"
    assert entries[0]["suppressed"] == 0
    assert entries[0]["context"] == {"token": "***"}


# -- in-process throttle ---------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_local_throttle_sends_once_per_window_then_reports_suppressed() -> None:
    clock = FakeClock()
    dispatcher = AlertDispatcher(throttle=Throttle(None, window_seconds=60, clock=clock))
    sink = MemorySink()
    dispatcher.subscribe(sink)
    sent = [dispatcher.alert("error", "disk", "full", key="host-1") for _ in range(10)]
    assert sent == [True] + [False] * 9
    assert dispatcher.alert("error", "disk", "full", key="host-2")  # other key: own window
    assert dispatcher.alert("error", "disk", "full")  # no key, kind not throttled: always sent
    clock.now += 60
    assert dispatcher.alert("error", "disk", "full", key="host-1")
    keyed = [a for a in sink.alerts if a.key == "host-1"]
    assert [a.suppressed for a in keyed] == [0, 9]
    assert dispatcher.stats()["throttled"] == 9


def test_throttled_kinds_and_explicit_override() -> None:
    clock = FakeClock()
    dispatcher = AlertDispatcher(
        throttle=Throttle(None, window_seconds=5, clock=clock), throttled_kinds={"noisy"}
    )
    assert dispatcher.alert("info", "noisy", "a")
    assert not dispatcher.alert("info", "noisy", "b")
    assert dispatcher.alert("info", "noisy", "c", throttle=False)
    assert dispatcher.alert("info", "quiet", "d", throttle=True)
    assert not dispatcher.alert("info", "quiet", "e", throttle=True)


def test_throttle_keys_are_prefixed_and_share_one_hash_slot() -> None:
    gate, counter = Throttle(None, prefix="sp").keys("disk_full", "host-1")
    assert gate == "sp:alert:{disk_full:host-1}:gate"
    assert counter == "sp:alert:{disk_full:host-1}:suppressed"


def test_throttle_validates_arguments() -> None:
    with pytest.raises(ValueError, match="window must be > 0"):
        Throttle(None, window_seconds=0)
    with pytest.raises(ValueError, match="prefix"):
        Throttle(None, prefix="a{b")


# -- webhook payloads (no network) -----------------------------------------------------------


def test_slack_payload_shape() -> None:
    alert = Alert(
        Severity.ERROR,
        "task_failed",
        "charge failed",
        {"order": 7},
        correlation_id="cid-1",
        suppressed=3,
    )
    body = slack_payload(alert)
    assert body["text"] == "[ERROR] task_failed: charge failed"
    [attachment] = body["attachments"]
    fields = {f["title"]: f["value"] for f in attachment["fields"]}
    assert fields["correlation_id"] == "cid-1"
    assert fields["suppressed"] == "3"
    assert fields["order"] == "7"
    assert attachment["color"] == "danger"


def test_webhook_sink_validates_url_and_hides_path_in_target() -> None:
    with pytest.raises(ValueError, match="http"):
        WebhookSink("file:///etc/passwd")
    sink = WebhookSink("https://hooks.slack.example/services/T000/B000/SECRET")
    assert sink.target == "https://hooks.slack.example"
    assert sink.payload(Alert(Severity.INFO, "k", "m", {"secret": "s"}))["context"] == {
        "secret": "***"
    }
    sink.close(timeout=1)


# -- retry exhaustion -> alert ---------------------------------------------------------------


def test_retry_exhaustion_emits_task_failed_alert_with_correlation_id() -> None:
    dispatcher = AlertDispatcher()
    sink = MemorySink()
    dispatcher.subscribe(sink)
    manager = RetryBackoffManager(max_retries=2, sleep=lambda _s: None)
    disconnect = connect_retry_exhaustion(dispatcher, manager.hooks)
    connect_retry_exhaustion(dispatcher, manager.hooks)  # idempotent: one alert per failure

    def always_fails() -> None:
        raise ConnectionError("partner api down, api_key=abc123")

    with bind_correlation_id("cid-final"), pytest.raises(RetryExhausted):
        manager.execute_with_retry(always_fails, "partner.call")
    [alert] = sink.alerts
    assert alert.kind == "task_failed"
    assert alert.severity is Severity.ERROR
    assert alert.correlation_id == "cid-final"
    assert alert.context["task"] == "partner.call"
    assert alert.context["attempts"] == 3
    assert "abc123" not in alert.context["error"]
    assert "abc123" not in alert.message
    disconnect()
    manager.hooks.fire(ExhaustedEvent(name="x", attempts=1, error="E()"))
    assert sink.count() == 1
