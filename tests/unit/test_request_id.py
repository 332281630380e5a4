"""Choosing a request's correlation id: X-Request-ID, traceparent, replacement of bad ids;
and the ASGI/WSGI middleware binding it and returning it (called directly, no server)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
import structlog

from sandbox_platform.core.context import current_correlation_id
from sandbox_platform.core.request_id import (
    choose_request_id,
    safe_request_id,
    trace_id_from_traceparent,
)
from sandbox_platform.middleware import RequestIdMiddleware, WSGIRequestIdMiddleware

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
FRESH = re.compile(r"[0-9a-f]{32}")


@pytest.mark.parametrize(
    "value",
    ["abc", "A-z.0_9:x", "x" * 128, "req:2026-11-27T10:00:00.123Z", "550e8400-e29b-41d4"],
)
def test_safe_ids_are_kept(value: str) -> None:
    assert safe_request_id(value) == value
    assert choose_request_id(value, TRACEPARENT) == (value, False)


@pytest.mark.parametrize(
    "value",
    [
        "x" * 129,
        "abc def",
        "abc\nlevel=error",
        'abc"',
        "abc/def",
        "caf\u00e9",
        "a;b",
        "a%0Ab",
        "{}",
        "a\x00b",
    ],
)
def test_unsafe_ids_are_replaced_by_a_fresh_one(value: str) -> None:
    assert safe_request_id(value) is None
    chosen, replaced = choose_request_id(value, TRACEPARENT)
    assert replaced is True
    assert FRESH.fullmatch(chosen) and chosen != value


def test_traceparent_trace_id_when_no_request_id() -> None:
    assert choose_request_id(None, TRACEPARENT) == (TRACE_ID, False)
    assert choose_request_id("", TRACEPARENT) == (TRACE_ID, False)


def test_fresh_id_when_nothing_usable() -> None:
    first, replaced = choose_request_id(None, None)
    second, _ = choose_request_id(None, "garbage")
    assert FRESH.fullmatch(first) and FRESH.fullmatch(second) and first != second
    assert replaced is False


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (TRACEPARENT, TRACE_ID),
        (f"  {TRACEPARENT} ", TRACE_ID),  # surrounding whitespace is allowed
        (f"01-{TRACE_ID}-00f067aa0ba902b7-01-future-field", TRACE_ID),  # a later version
        (f"01-{TRACE_ID}-00f067aa0ba902b7-00", TRACE_ID),
        (f"00-{TRACE_ID}-00f067aa0ba902b7-01-extra", None),  # version 00 has 4 fields
        (f"ff-{TRACE_ID}-00f067aa0ba902b7-01", None),  # version ff is invalid
        (f"00-{'0' * 32}-00f067aa0ba902b7-01", None),  # all-zero trace id
        (f"00-{TRACE_ID}-{'0' * 16}-01", None),  # all-zero parent id
        (f"00-{TRACE_ID.upper()}-00f067aa0ba902b7-01", None),  # uppercase hex
        (f"00-{TRACE_ID[:-1]}-00f067aa0ba902b7-01", None),  # short trace id
        (f"00-{TRACE_ID}-00f067aa0ba902b7", None),  # no flags
        (f"0-{TRACE_ID}-00f067aa0ba902b7-01", None),
        (f"00_{TRACE_ID}_00f067aa0ba902b7_01", None),
        ("", None),
        (None, None),
    ],
)
def test_traceparent_parsing(header: str | None, expected: str | None) -> None:
    assert trace_id_from_traceparent(header) == expected


# -- the middleware, called directly -----------------------------------------------------------


def _asgi_call(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, list[Any]]:
    seen: list[str | None] = []
    sent: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(current_correlation_id())
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"x-request-id", b"from-app"), (b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": headers}
    asyncio.run(RequestIdMiddleware(app)(scope, receive, send))
    return seen[0], sent


def _response_ids(message: Any) -> list[bytes]:
    return [value for name, value in message["headers"] if name == b"x-request-id"]


def test_asgi_binds_and_returns_the_id() -> None:
    seen, sent = _asgi_call([(b"x-request-id", b"abc"), (b"traceparent", TRACEPARENT.encode())])
    assert seen == "abc"
    assert _response_ids(sent[0]) == [b"abc"]  # the app's own value is replaced, not doubled
    assert current_correlation_id() is None  # unbound after the request


def test_asgi_traceparent_and_bad_id() -> None:
    seen, sent = _asgi_call([(b"traceparent", TRACEPARENT.encode())])
    assert seen == TRACE_ID and _response_ids(sent[0]) == [TRACE_ID.encode()]
    bad = b"evil\r\nx: y" + b"z" * 200
    with structlog.testing.capture_logs() as logs:
        seen, sent = _asgi_call([(b"X-Request-ID", bad)])
    assert seen is not None and FRESH.fullmatch(seen)
    assert _response_ids(sent[0]) == [seen.encode()]
    # the replacement is logged, without the value that was sent
    assert [entry["event"] for entry in logs] == ["unsafe X-Request-ID replaced"]
    assert logs[0]["received_length"] == len(bad) and logs[0]["request_id"] == seen
    assert "evil" not in repr(logs)  # (not a hex digit: never part of a fresh id)


def test_wsgi_binds_while_the_body_is_produced() -> None:
    seen: list[str | None] = []
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        seen.append(current_correlation_id())
        start_response("200 OK", [("X-Request-ID", "from-app"), ("Content-Type", "text/plain")])

        def body() -> Any:  # a lazy body runs after the application returned
            seen.append(current_correlation_id())
            yield b"ok"

        return body()

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.append((status, headers))

    middleware = WSGIRequestIdMiddleware(app)
    result = middleware({"HTTP_X_REQUEST_ID": "abc", "REQUEST_METHOD": "GET"}, start_response)
    assert current_correlation_id() is None
    assert b"".join(result) == b"ok"
    result.close()  # type: ignore[attr-defined]
    assert seen == ["abc", "abc"]
    assert [v for k, v in started[0][1] if k.lower() == "x-request-id"] == ["abc"]

    seen.clear()
    started.clear()
    result = middleware({"HTTP_X_REQUEST_ID": "no spaces allowed"}, start_response)
    list(result)
    assert seen[0] is not None and FRESH.fullmatch(seen[0]) and seen[0] == seen[1]
    assert [v for k, v in started[0][1] if k.lower() == "x-request-id"] == [seen[0]]

    seen.clear()
    list(middleware({"HTTP_TRACEPARENT": TRACEPARENT}, start_response))
    assert seen == [TRACE_ID, TRACE_ID]
