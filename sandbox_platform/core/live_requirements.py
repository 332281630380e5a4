"""What live mode needs to be told that sandbox mode supplies itself: an app and a Redis.

Sandbox mode falls back to the bundled example app (:data:`EXAMPLE_APP`) and to an embedded
``redis-server``. In live mode either fallback would be wrong: the example's tasks running in
production, or a private Redis per host (each host its own governor and idempotency state).
So there an unset one is a :class:`~sandbox_platform.core.errors.SettingsError` naming the
variable: one line and exit code 2 at the command line.

The Redis URL is checked when the settings load (every live process needs the shared Redis).
The app is checked where one is chosen (:func:`chosen_app`: the commands that load tasks):
an application that only enqueues builds its app itself and names no module.
"""

from __future__ import annotations

from sandbox_platform.core.errors import SettingsError

__all__ = ["EXAMPLE_APP", "check_live_settings", "chosen_app"]

#: the default app in sandbox mode: the example shop, inside the package (wheel installs too)
EXAMPLE_APP = "sandbox_platform.examples.shop"


def check_live_settings(
    *, live: bool, live_database_url: str | None, redis_url: str | None
) -> None:
    """Raise a one-line SettingsError when live mode lacks a live database or a Redis URL."""
    if not live:
        return
    if not live_database_url:
        raise SettingsError(
            "SANDBOX_PLATFORM_LIVE_DATABASE_URL", "live mode needs a live database URL"
        )
    if not redis_url:
        raise SettingsError(
            "SANDBOX_PLATFORM_REDIS_URL",
            "live mode needs a Redis URL shared by every process (the embedded redis-server "
            "is for sandbox mode only: each host would keep its own governor and idempotency "
            "state)",
        )


def chosen_app(*, live: bool, app: str | None) -> str:
    """The app module to load: ``app``, else the example in sandbox mode; in live mode an
    unset app is a SettingsError naming ``SANDBOX_PLATFORM_APP``."""
    if app:
        return app
    if live:
        raise SettingsError(
            "SANDBOX_PLATFORM_APP",
            "live mode needs your app module (set it, or pass --app); the bundled example "
            f"({EXAMPLE_APP}) is the default in sandbox mode only",
        )
    return EXAMPLE_APP
