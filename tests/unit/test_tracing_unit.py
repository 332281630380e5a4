"""Tracing set-up errors are one line, naming the variable; off by default."""

from __future__ import annotations

import sys

import pytest

from sandbox_platform.core.errors import SettingsError
from sandbox_platform.core.settings import load_settings
from sandbox_platform.integrations import tracing


def test_off_by_default(sqlite_url: str) -> None:
    settings = load_settings(redis_url="redis://127.0.0.1:6379/3", database_url=sqlite_url)
    assert settings.otel is False
    assert tracing.install_tracing(settings) is False


def test_an_unknown_exporter_is_one_line() -> None:
    with pytest.raises(SettingsError) as caught:
        tracing._exporter("zipkin")
    message = str(caught.value)
    assert message.startswith("OTEL_TRACES_EXPORTER: 'zipkin' is not supported")
    assert "\n" not in message


def test_missing_extra_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.instrumentation.celery", None)
    with pytest.raises(SettingsError) as caught:
        tracing._instrument()
    message = str(caught.value)
    assert message == (
        "SANDBOX_PLATFORM_OTEL: OpenTelemetry tracing needs the [otel] extra: "
        "pip install 'sandbox-platform[otel]'"
    )
