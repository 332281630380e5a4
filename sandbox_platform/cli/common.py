"""What every command shares: settings (or one line and exit 2), the user's Celery app
(``--app`` / ``SANDBOX_PLATFORM_APP``; one line and exit 2 when it cannot be imported),
the environment of the Celery processes it starts."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
from typing import Annotated, Any, NoReturn

import typer
from celery import Celery

from sandbox_platform.core.errors import ExtraMissing, IsolationError, SettingsError
from sandbox_platform.core.exits import EXIT_SETTINGS, settings_error_exit
from sandbox_platform.core.extras import require, require_configured
from sandbox_platform.core.live_requirements import EXAMPLE_APP, chosen_app
from sandbox_platform.core.redaction import redact_value
from sandbox_platform.core.redis_client import redis_url
from sandbox_platform.core.settings import Mode, Settings, app_name_problem, load_settings

__all__ = [
    "AppOption",
    "app_module",
    "celery_env",
    "cli_settings",
    "load_app",
    "readiness_settings",
    "require_extra",
]


def cli_settings() -> Settings:
    """The settings, or one line naming the bad variable and exit code 2 (a feature they turn
    on whose extra is not installed, too: a ``postgresql://`` URL, OTEL, the embedded Redis)."""
    try:
        settings = load_settings()
        require_configured(settings)
    except SettingsError as error:
        settings_error_exit(error)
    return settings


def require_extra(name: str, feature: str) -> None:
    """A command of an extra: one line naming it and exit code 2 when it is not installed
    (``sandbox-platform: the dashboard needs the [dashboard] extra: pip install ...``)."""
    try:
        require(name, feature)
    except ExtraMissing as error:
        print(f"sandbox-platform: {error}", file=sys.stderr)
        raise SystemExit(EXIT_SETTINGS) from None


#: ``--app`` on every command that loads tasks; unset: ``SANDBOX_PLATFORM_APP``, else (sandbox
#: mode only) the bundled example
AppOption = Annotated[
    str | None,
    typer.Option(
        "--app",
        help="the module with your Celery app and tasks (`pkg.module`, or `pkg.module:attr`); "
        f"default: SANDBOX_PLATFORM_APP, else in sandbox mode the bundled example {EXAMPLE_APP}",
        show_default=False,
    ),
]


def app_module(option: str | None, settings: Settings) -> str:
    """The app module a command uses: ``--app``, else the setting, else (sandbox mode) the
    bundled example; a malformed name, or no app in live mode, is one line and exit 2."""
    if option is None:
        try:
            return chosen_app(live=settings.mode is Mode.LIVE, app=settings.app)
        except SettingsError as error:
            settings_error_exit(error)
    problem = app_name_problem(option)
    if problem:
        raise typer.BadParameter(problem, param_hint="--app")
    return option


def load_app(module: str, settings: Settings, notes: list[str] | None = None) -> Celery:
    """The Celery app of ``module`` (found as ``celery -A`` finds it: ``module:attr``, else
    ``module.app``, ``module.celery`` or the module's one Celery app).

    An app that cannot be imported is one line on stderr and exit 2. One exception, for
    ``readiness`` (``notes`` given): a module that refuses the settings (exits on a settings
    error, e.g. sandbox and live databases coincide) is replaced by a platform app built from
    them, and why goes to ``notes`` — the report then says what is wrong, with its NO-GO.
    """
    from sandbox_platform.app.factory import create_app

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            candidate = _import_app(module)
        sys.stderr.write(captured.getvalue())
    except SystemExit as exc:  # the app module exits 2 on a settings error
        said = " ".join(captured.getvalue().split())
        problem = redact_value(f"cannot import {module} (exit {exc.code}) {said}".strip())
        if notes is None:
            _app_error(problem)
        notes.append(f"{problem}; using a platform app built from the settings")
        return create_app(settings)
    except Exception as exc:
        said = " ".join(captured.getvalue().split())
        _app_error(redact_value(f"cannot import {module}: {type(exc).__name__}: {exc} {said}"))
    if not isinstance(candidate, Celery):
        _app_error(f"{module} is a {type(candidate).__name__}, not a Celery app")
    return candidate


def _import_app(module: str) -> Any:
    if os.getcwd() not in sys.path:  # as ``celery -A``: the module may be in the cwd
        sys.path.insert(0, os.getcwd())
    if ":" in module:
        name, attr = module.split(":", 1)
        return getattr(importlib.import_module(name), attr)
    from celery.app.utils import find_app

    return find_app(module)


def _app_error(problem: str) -> NoReturn:
    print(
        f"sandbox-platform: app error: {problem.strip()} "
        "(set --app or SANDBOX_PLATFORM_APP to the module with your Celery app)",
        file=sys.stderr,
    )
    raise SystemExit(EXIT_SETTINGS)


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
