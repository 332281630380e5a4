"""ASGI and WSGI middleware: one correlation id per HTTP request, from its headers.

Both work on a core install (no web framework imported: the ASGI shapes are spelt here).

The id is chosen by :func:`~sandbox_platform.core.request_id.choose_request_id`
(``X-Request-ID``, else the ``traceparent`` trace id, else fresh; an unsafe id is replaced),
bound with :func:`~sandbox_platform.core.context.bind_correlation_id` while the request is
handled — so log lines carry it and every task enqueued meanwhile carries it in its message
headers — and returned in the response's ``X-Request-ID`` header.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from types import TracebackType
from typing import Any

import structlog

from sandbox_platform.core.context import bind_correlation_id
from sandbox_platform.core.request_id import (
    REQUEST_ID_HEADER,
    TRACEPARENT_HEADER,
    choose_request_id,
)
from sandbox_platform.integrations.tracing import tag_current_span

__all__ = ["RequestIdMiddleware", "WSGIRequestIdMiddleware"]

# The ASGI callables' shapes, spelt as Starlette spells them (``starlette.types``), so either
# middleware works on a core install: neither imports a web framework.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = structlog.get_logger(__name__)

_ASGI_REQUEST_ID = REQUEST_ID_HEADER.lower().encode("latin-1")
_ASGI_TRACEPARENT = TRACEPARENT_HEADER.encode("latin-1")
_WSGI_REQUEST_ID = "HTTP_" + REQUEST_ID_HEADER.upper().replace("-", "_")
_WSGI_TRACEPARENT = "HTTP_" + TRACEPARENT_HEADER.upper()


def _request_id(request_id: str | None, traceparent: str | None) -> str:
    chosen, replaced = choose_request_id(request_id, traceparent)
    if replaced:  # never the value itself: it may be an injection or a secret
        log.warning(
            "unsafe X-Request-ID replaced", received_length=len(request_id or ""), request_id=chosen
        )
    tag_current_span(chosen)  # the request's span (OpenTelemetry on, an instrumented server)
    return chosen


class RequestIdMiddleware:
    """ASGI middleware (Starlette, FastAPI, any ASGI app)::

    app = RequestIdMiddleware(app)   # or Starlette(middleware=[Middleware(RequestIdMiddleware)])
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for name, value in scope.get("headers", ()):
            headers.setdefault(bytes(name).lower(), bytes(value))
        correlation_id = _request_id(
            _latin1(headers.get(_ASGI_REQUEST_ID)), _latin1(headers.get(_ASGI_TRACEPARENT))
        )

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [
                    (name, value)
                    for name, value in message.get("headers", ())
                    if bytes(name).lower() != _ASGI_REQUEST_ID
                ]
                kept.append((_ASGI_REQUEST_ID, correlation_id.encode("ascii")))
                message = {**message, "headers": kept}
            await send(message)

        with bind_correlation_id(correlation_id):
            await self.app(scope, receive, send_with_id)


def _latin1(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


class WSGIRequestIdMiddleware:
    """WSGI middleware (Flask, Django, any WSGI app)::

    app.wsgi_app = WSGIRequestIdMiddleware(app.wsgi_app)   # Flask
    application = WSGIRequestIdMiddleware(get_wsgi_application())   # Django

    The id stays bound while the application produces the response body too (a WSGI body
    may be a generator that runs after the application returned).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        correlation_id = _request_id(environ.get(_WSGI_REQUEST_ID), environ.get(_WSGI_TRACEPARENT))

        def start_with_id(
            status: str,
            headers: list[tuple[str, str]],
            exc_info: tuple[type[BaseException], BaseException, TracebackType] | None = None,
        ) -> Any:
            kept = [(k, v) for k, v in headers if k.lower() != REQUEST_ID_HEADER.lower()]
            kept.append((REQUEST_ID_HEADER, correlation_id))
            return start_response(status, kept, exc_info)

        with bind_correlation_id(correlation_id):
            body = self.app(environ, start_with_id)
        return _BoundBody(body, correlation_id)


class _BoundBody:
    """A WSGI body iterated (and closed) with the request's correlation id bound."""

    def __init__(self, body: Iterable[bytes], correlation_id: str) -> None:
        self._body = body
        self._iterator: Iterator[bytes] | None = None
        self._correlation_id = correlation_id

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._iterator is None:
            self._iterator = iter(self._body)
        with bind_correlation_id(self._correlation_id):
            return next(self._iterator)

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            with bind_correlation_id(self._correlation_id):
                close()
