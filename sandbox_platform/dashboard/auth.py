"""Who may use the dashboard, and CSRF protection for its actions.

Credentials come from the settings: ``DASHBOARD_USER`` + ``DASHBOARD_PASSWORD`` (HTTP basic)
and/or ``DASHBOARD_TOKEN`` (``Authorization: Bearer <token>``). When any are set, every page
and API call needs them. Without any, the dashboard serves only a loopback address in
sandbox mode (local development); anything else refuses to start. The probes ``/healthz`` and
``/readyz`` never need credentials.

Actions (POST) carry a CSRF token bound to the process and the user, and must come from the
dashboard's own origin when the browser says where they come from.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox_platform.core.errors import SettingsError
from sandbox_platform.core.net import is_loopback
from sandbox_platform.core.settings import ENV_PREFIX, Mode, Settings

__all__ = ["PUBLIC_PATHS", "AuthMiddleware", "Credentials", "csrf_token", "same_origin"]

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
ANONYMOUS = "local"


@dataclass(frozen=True)
class Credentials:
    user: str | None
    password: str | None
    token: str | None

    @classmethod
    def for_server(cls, settings: Settings, host: str) -> Credentials | None:
        """The credentials to require on ``host``; None: open (loopback, sandbox, none set).

        Raises SettingsError when the dashboard would be open anywhere else.
        """
        if settings.dashboard_auth_configured:
            return cls(
                settings.dashboard_user, settings.dashboard_password, settings.dashboard_token
            )
        if is_loopback(host) and settings.mode is Mode.SANDBOX:
            return None
        raise SettingsError(
            f"{ENV_PREFIX}DASHBOARD_USER",
            f"the dashboard on {host or 'all interfaces'} in {settings.mode.value} mode needs "
            f"credentials: set {ENV_PREFIX}DASHBOARD_USER and {ENV_PREFIX}DASHBOARD_PASSWORD "
            f"(or {ENV_PREFIX}DASHBOARD_TOKEN)",
        )

    def user_of(self, header: str | None) -> str | None:
        """The user an ``Authorization`` header proves, or None."""
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and self.token:
            return "token" if hmac.compare_digest(value.strip(), self.token) else None
        if scheme.lower() == "basic" and self.user and self.password:
            try:
                user, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            user_ok = hmac.compare_digest(user, self.user)
            password_ok = hmac.compare_digest(password, self.password)
            return user if user_ok and password_ok else None
        return None


def _unauthorized() -> Response:
    return PlainTextResponse(
        "401 Unauthorized: credentials required\n",
        status_code=401,
        headers={"WWW-Authenticate": 'Basic realm="sandbox-platform", charset="UTF-8"'},
    )


class AuthMiddleware:
    """Every request but the probes needs credentials (when any are required); the user
    lands in ``scope["state"]["user"]``."""

    def __init__(self, app: ASGIApp, credentials: Credentials | None) -> None:
        self.app = app
        self.credentials = credentials

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        user: str | None = ANONYMOUS
        if self.credentials is not None and scope["path"] not in PUBLIC_PATHS:
            user = self.credentials.user_of(Request(scope).headers.get("authorization"))
            if user is None:
                await _unauthorized()(scope, receive, send)
                return
        scope.setdefault("state", {})["user"] = user
        await self.app(scope, receive, send)


_SECRET = secrets.token_bytes(32)


def csrf_token(user: str) -> str:
    """The CSRF token of ``user`` for this dashboard process."""
    return hmac.new(_SECRET, f"csrf:{user}".encode(), hashlib.sha256).hexdigest()


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host
