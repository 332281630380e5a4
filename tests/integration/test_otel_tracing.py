"""OpenTelemetry across real processes: an enqueuing process and a real worker, both with
``SANDBOX_PLATFORM_OTEL=1``, export over OTLP/HTTP to a receiver the test runs. The enqueue,
the task and its child task are spans of one trace, each carrying ``sandbox.correlation_id``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import platform_env, wait_until
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

# the user's own process: its app module (SANDBOX_PLATFORM_APP, default the bundled example),
# one enqueue under a bound correlation id; the SDK flushes its spans when the process exits
ENQUEUE = textwrap.dedent(
    """
    import importlib, os, sys
    from sandbox_platform import bind_correlation_id

    module = importlib.import_module(os.environ.get("SANDBOX_PLATFORM_APP") or "workers")
    with bind_correlation_id(sys.argv[1]):
        result = module.tasks.charge_card.delay(sys.argv[2], 4200, email="a@example.com")
    print(result.id)
    """
)

SPAN_NAMES = (
    "apply_async/workers.charge_card",
    "run/workers.charge_card",
    "apply_async/workers.send_receipt",
    "run/workers.send_receipt",
)


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    """The receiver, and the OTEL_* variables every process the test starts inherits."""
    with OtlpReceiver() as running:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", running.url)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # export within 0.1 s
        monkeypatch.setenv("OTEL_SERVICE_NAME", "sp-otel-test")
        monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
        monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
        yield running


def _by_name(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    """The first span of each expected name, once all four arrived."""
    found: dict[str, ReceivedSpan] = {}
    for span in spans:
        if span.name in SPAN_NAMES and span.attributes.get("celery.task_name"):
            found.setdefault(span.name, span)
    return found if len(found) == len(SPAN_NAMES) else {}


def test_enqueue_task_and_child_share_one_trace(
    receiver: OtlpReceiver, platform_app, worker_factory, platform_settings_kwargs
) -> None:
    worker = worker_factory(platform_app, otel=True)
    correlation_id = f"otel-{uuid.uuid4().hex[:12]}"
    proc = subprocess.run(
        [sys.executable, "-c", ENQUEUE, correlation_id, f"order-{uuid.uuid4().hex[:8]}"],
        cwd=ROOT,
        env=platform_env(**platform_settings_kwargs, otel=True),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    task_id = proc.stdout.strip()

    spans = wait_until(
        lambda: _by_name(receiver.snapshot()),
        timeout=30,
        message=f"not every span arrived; worker log: {worker.log_path}",
    )
    enqueue, run, child_enqueue, child_run = (spans[name] for name in SPAN_NAMES)

    assert len({s.trace_id for s in spans.values()}) == 1, spans
    assert {s.attributes.get("sandbox.correlation_id") for s in spans.values()} == {
        correlation_id
    }, spans
    # the chain: enqueue -> run -> child enqueue -> child run
    assert run.parent_span_id == enqueue.span_id
    assert child_enqueue.parent_span_id == run.span_id
    assert child_run.parent_span_id == child_enqueue.span_id
    assert enqueue.attributes.get("messaging.message.id") == task_id
    assert {s.service for s in spans.values()} == {"sp-otel-test"}
