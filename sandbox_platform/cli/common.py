"""What every command shares: settings (or one line and exit 2), the user's Celery app,
the environment of the Celery processes it starts."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys

from celery import Celery
from rich.console import Console

from sandbox_platform.core.errors import IsolationError, SettingsError
from sandbox_platform.core.exits import settings_error_exit
from sandbox_platform.core.redaction import redact_value
from sandbox_platform.core.redis_client import redis_url
from sandbox_platform.core.settings import Settings, load_settings

__all__ = ["celery_env", "cli_settings", "load_app", "readiness_settings"]


def cli_settings() -> Settings:
    """The settings, or one line naming the bad variable and exit code 2."""
    try:
        return load_settings()
    except SettingsError as error:
        settings_error_exit(error)


def load_app(app_module: str, settings: Settings, notes: list[str] | None = None) -> Celery:
    """``<module>.app`` (for its task registry); else a platform app built from the settings.

    Why the module could not be used goes to ``notes`` (or is printed when none is given).
    """
    from sandbox_platform.app.factory import create_app

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            candidate = importlib.import_module(app_module).app
        sys.stderr.write(captured.getvalue())
        if isinstance(candidate, Celery):
            return candidate
        problem = f"{app_module}.app is a {type(candidate).__name__}, not a Celery app"
    except (Exception, SystemExit) as exc:  # an app module exits 2 on a settings error
        said = " ".join(captured.getvalue().split())
        problem = f"cannot import {app_module}.app ({type(exc).__name__}: {exc}) {said}".strip()
    note = f"{redact_value(problem)}; using a platform app built from the settings"
    if notes is None:
        Console(stderr=True).print(f"note: {note}", markup=False, highlight=False)
    else:
        notes.append(note)
    return create_app(settings)


def readiness_settings() -> Settings:
    """Settings even when sandbox and live coincide: the report then says NO-GO, exit 1."""
    try:
        return load_settings()
    except IsolationError:
        try:
            return load_settings(enforce_isolation=False)
        except SettingsError as error:
            settings_error_exit(error)
    except SettingsError as error:
        settings_error_exit(error)


def celery_env(settings: Settings) -> dict[str, str]:
    """The environment for a child celery process: the resolved Redis URL made explicit."""
    env = dict(os.environ)
    env["SANDBOX_PLATFORM_REDIS_URL"] = redis_url(settings)
    return env
