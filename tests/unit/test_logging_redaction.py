"""Secrets in log calls are masked in the rendered output; JSON lines carry context."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from sandbox_platform.core.context import bind_correlation_id
from sandbox_platform.core.logging import configure_logging
from sandbox_platform.core.redaction import redact, redact_value


@pytest.fixture
def log_stream():
    stream = io.StringIO()
    root_level = logging.getLogger().level
    configure_logging("json", "DEBUG", stream=stream, cache=False)
    yield stream
    logging.getLogger().setLevel(root_level)
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == "sandbox_platform":
            root.removeHandler(handler)


def _records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_secrets_in_structlog_calls_are_masked(log_stream: io.StringIO) -> None:
    log = structlog.get_logger("test")
    log.info(
        "connecting",
        password="hunter2",
        api_token="tok_live_abcdef",
        url="postgresql://app:s3cr3t@db.internal:5432/app",
        headers={"Authorization": "Bearer eyJhbGciOi.secret.sig"},
        card="4111 1111 1111 1111",
        note="retry with password=letmein and token: abc123",
    )
    text = log_stream.getvalue()
    for secret in (
        "hunter2",
        "tok_live_abcdef",
        "s3cr3t",
        "eyJhbGciOi",
        "4111 1111 1111 1111",
        "letmein",
        "abc123",
    ):
        assert secret not in text, secret
    record = _records(log_stream)[0]
    assert record["url"] == "postgresql://app:***@db.internal:5432/app"
    assert record["card"] == "***1111"
    assert record["password"] == "***"


def test_stdlib_logging_goes_through_the_same_pipeline(log_stream: io.StringIO) -> None:
    logging.getLogger("celery.worker").warning("broker redis://:pw123@127.0.0.1:6379/0 lost")
    record = _records(log_stream)[0]
    assert "pw123" not in json.dumps(record)
    assert record["logger"] == "celery.worker"


def test_correlation_id_is_on_every_line(log_stream: io.StringIO) -> None:
    with bind_correlation_id("corr-123"):
        structlog.get_logger("test").info("inside")
        logging.getLogger("plain").info("stdlib inside")
    structlog.get_logger("test").info("outside")
    records = _records(log_stream)
    assert [r.get("correlation_id") for r in records] == ["corr-123", "corr-123", None]


def test_redact_leaves_harmless_values() -> None:
    assert redact_value("order 12345 shipped") == "order 12345 shipped"
    assert redact_value("1234567890123") == "1234567890123"  # not Luhn-valid: not a card
    assert redact({"amount": 10, "items": ["a", "b"]}) == {"amount": 10, "items": ["a", "b"]}


@pytest.mark.parametrize("task_events", [False, True])
def test_celery_task_event_lines_are_opt_in(task_events: bool) -> None:
    stream = io.StringIO()
    root_level = logging.getLogger().level
    configure_logging("json", "INFO", stream=stream, cache=False, task_events=task_events)
    try:
        trace = logging.getLogger("celery.app.trace")
        trace.info("Task x[1] succeeded in 0.01s: None")
        trace.error("Task y[2] raised unexpected: RuntimeError()")
    finally:
        structlog.reset_defaults()
        logging.getLogger().setLevel(root_level)
        for handler in list(logging.getLogger().handlers):
            if handler.get_name() == "sandbox_platform":
                logging.getLogger().removeHandler(handler)
    events = [r["event"] for r in _records(stream)]
    assert ("Task x[1] succeeded in 0.01s: None" in events) is task_events
    assert "Task y[2] raised unexpected: RuntimeError()" in events  # failures always pass


@pytest.mark.parametrize(
    "text",
    [
        "lease beat acquired by host:1:ab12 with token 12",
        "beat host:1:ab12 is now the leader (fencing token 7)",
        "claim taken, fencing_token=42",
        "processed 1200 jobs in 3 batches, tick sandbox-platform-heartbeat:1795795030",
    ],
)
def test_counts_fencing_tokens_and_ids_stay_readable(text: str) -> None:
    assert redact_value(text) == text


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Token abc123def", "abc123def"),
        ("Bearer 123456789", "123456789"),
        ("password=123456", "123456"),
        ("api_token=987654", "987654"),
        ("auth_token: 555111", "555111"),
        ("session_token=31337", "31337"),
    ],
)
def test_numeric_secrets_are_still_masked(text: str, secret: str) -> None:
    assert secret not in redact_value(text)


def test_fencing_token_in_a_log_line_is_readable(log_stream: io.StringIO) -> None:
    logging.getLogger("sandbox_platform.ops.leader").info(
        "lease %s acquired by %s with token %s", "beat", "host:1:ab", 9
    )
    assert _records(log_stream)[0]["event"] == "lease beat acquired by host:1:ab with token 9"


def test_a_task_id_whose_digit_groups_pass_the_luhn_check_stays_readable() -> None:
    # a real task id of a CI run (2026-12-08): 67455557-7146-4294 is 16 digits, Luhn-valid,
    # and was masked as a card number in the job's run record ('***4294-b13a-...')
    task_id = "67455557-7146-4294-b13a-56ede51848d9"
    assert redact_value(task_id) == task_id
    assert redact({"task_id": task_id, "note": f"job {task_id} done"}) == {
        "task_id": task_id,
        "note": f"job {task_id} done",
    }
    assert redact_value(f"card 4111-1111-1111-1111 for {task_id}") == (
        f"card ***1111 for {task_id}"
    )
