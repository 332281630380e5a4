"""OpenTelemetry traces of guarded work, when enabled (``SANDBOX_PLATFORM_OTEL=1``).

:func:`install_tracing` (called by ``create_app``, once per process) instruments Celery with
``opentelemetry-instrumentation-celery``: every publish is a PRODUCER span whose context
travels in the message headers (W3C ``traceparent``), every task run a CONSUMER span child of
it, so an enqueue, its task and the task's child tasks share one trace. Every span started
while a correlation id is bound, and every publish and task span, carries the attribute
``sandbox.correlation_id``.

When nobody configured the OpenTelemetry SDK in this process, the platform does, from the
standard variables: ``OTEL_TRACES_EXPORTER`` (``otlp``, the default: OTLP over HTTP to
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``/``OTEL_EXPORTER_OTLP_ENDPOINT``, default
``http://localhost:4318``; ``console``; ``none``), ``OTEL_SERVICE_NAME`` (default
``sandbox-platform``), ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_BSP_*`` (the batch span
processor). A tracer provider the application installed first is used as it is.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from celery import signals

from sandbox_platform.core.context import CORRELATION_HEADER, current_correlation_id
from sandbox_platform.core.errors import SettingsError
from sandbox_platform.core.extras import require
from sandbox_platform.core.settings import ENV_PREFIX, Settings

__all__ = ["CORRELATION_ATTRIBUTE", "install_tracing", "tag_current_span", "tracing_installed"]

#: the span attribute that carries the correlation id
CORRELATION_ATTRIBUTE = "sandbox.correlation_id"
DEFAULT_SERVICE_NAME = "sandbox-platform"

_lock = threading.Lock()
_installed = False


def tracing_installed() -> bool:
    return _installed


def install_tracing(settings: Settings) -> bool:
    """Instrument this process when ``settings.otel`` is on (once); True when tracing is on.

    Raises :class:`SettingsError` (one line) when the [otel] extra is not installed
    (:class:`~sandbox_platform.core.errors.ExtraMissing`) or
    ``OTEL_TRACES_EXPORTER`` names an exporter the platform does not ship."""
    global _installed
    if not settings.otel:
        return False
    with _lock:
        if _installed:
            return True
        _instrument()
        _installed = True
    return True


def _instrument() -> None:
    require("otel", "OpenTelemetry tracing", f"{ENV_PREFIX}OTEL")
    from opentelemetry import trace
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.sdk.trace import TracerProvider

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):  # nobody set the SDK up: the platform does
        provider = _sdk_provider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(_correlation_processor())
    CeleryInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    # connected after the instrumentation's receivers: the publish/run span is current
    signals.before_task_publish.connect(
        _tag_publish, weak=False, dispatch_uid="sandbox_platform.tracing.publish"
    )
    signals.task_prerun.connect(_tag_run, weak=False, dispatch_uid="sandbox_platform.tracing.run")


def _sdk_provider() -> Any:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: DEFAULT_SERVICE_NAME}
    provider = TracerProvider(resource=Resource.create(attributes))
    exporter = _exporter(os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower())
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _exporter(name: str) -> Any:
    if name in ("", "otlp"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name == "none":
        return None
    raise SettingsError(
        "OTEL_TRACES_EXPORTER",
        f"{name!r} is not supported by sandbox-platform: use otlp (OTLP over HTTP), console "
        "or none",
    )


def _correlation_processor() -> Any:
    """A span processor: every span started while a correlation id is bound carries it."""
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import Span, SpanProcessor

    class CorrelationIdProcessor(SpanProcessor):
        def on_start(self, span: Span, parent_context: Context | None = None) -> None:
            correlation_id = current_correlation_id()
            if correlation_id is not None:
                span.set_attribute(CORRELATION_ATTRIBUTE, correlation_id)

    return CorrelationIdProcessor()


def tag_current_span(correlation_id: str) -> None:
    """Put ``correlation_id`` on the current span (e.g. a web request's), when tracing is on."""
    if not _installed:
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(CORRELATION_ATTRIBUTE, correlation_id)


def _tag_publish(headers: dict[str, Any] | None = None, **_kwargs: Any) -> None:
    """The publish span: the id the message carries (a fresh one when none was bound)."""
    correlation_id = (headers or {}).get(CORRELATION_HEADER)
    if isinstance(correlation_id, str):
        tag_current_span(correlation_id)


def _tag_run(**_kwargs: Any) -> None:
    """The run span: the id the platform bound for the job (its message's)."""
    correlation_id = current_correlation_id()
    if correlation_id is not None:
        tag_current_span(correlation_id)
