"""The platform apps of this process, and which settings code is under.

Inside a job, the job's own app decides: its settings (mode, databases) and its services come
from the job scope (:mod:`sandbox_platform.core.jobscope`), so two apps of different modes in
one process, or many jobs interleaved on threads, never see each other's.

Outside any job (module import, a script, a web request, the test process) there is no job to
ask. Code there uses the settings of the platform app the process has; with several apps they
must agree, or the caller says which (``platform_session(app.platform_settings)``). This
registry is one of the few process-wide slots left (docs/architecture.md lists them): it holds
apps weakly, in creation order, and ``create_app`` / ``app.close()`` add and remove them.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox_platform.core.errors import PlatformError
from sandbox_platform.core.jobscope import current_job
from sandbox_platform.core.settings import Mode, Settings, load_settings

__all__ = [
    "AmbiguousAppError",
    "AppEntry",
    "active_settings",
    "platform_apps",
    "register_app",
    "settings_of",
    "unregister_app",
]


class AmbiguousAppError(PlatformError):
    """Outside any job, the process has platform apps whose settings differ: say which."""


@dataclass(frozen=True)
class AppEntry:
    """A platform app as code outside any job sees it: its settings and how to reach its
    dry-run lock (``lock()`` builds the app's runtime on first use)."""

    settings: Settings
    lock: Callable[[], Any]

    @property
    def mode(self) -> Mode:
        return self.settings.mode


_apps: weakref.WeakKeyDictionary[Any, AppEntry] = weakref.WeakKeyDictionary()


def register_app(app: Any, settings: Settings, lock: Callable[[], Any]) -> None:
    """``create_app`` calls this: ``app`` is one of this process's platform apps."""
    _apps[app] = AppEntry(settings, lock)


def unregister_app(app: Any) -> None:
    """``app`` is closed: code outside a job no longer considers it."""
    _apps.pop(app, None)


def platform_apps() -> list[AppEntry]:
    """The platform apps of this process that are still open, oldest first."""
    return list(_apps.values())


def active_settings() -> Settings:
    """The settings code runs under: the running job's app's; outside any job, those of the
    process's platform app (every app's, when they are equal); with no app, the
    environment's (:func:`~sandbox_platform.core.settings.load_settings`).

    Raises :class:`AmbiguousAppError` outside a job when the process's apps differ."""
    job = current_job()
    if job is not None and job.settings is not None:
        return job.settings
    distinct: list[Settings] = []
    for entry in platform_apps():
        if not any(entry.settings == seen for seen in distinct):
            distinct.append(entry.settings)
    if not distinct:
        return load_settings()
    if len(distinct) > 1:
        modes = ", ".join(sorted({s.mode.value for s in distinct}))
        raise AmbiguousAppError(
            f"outside any job this process has {len(distinct)} platform apps with different "
            f"settings ({modes}); pass the app's settings explicitly "
            "(e.g. platform_session(app.platform_settings))"
        )
    return distinct[0]


def settings_of(app: Any) -> Settings:
    """``app``'s platform settings; for a plain Celery app (no platform settings), the
    environment's."""
    settings = getattr(app, "platform_settings", None)
    return settings if isinstance(settings, Settings) else load_settings()
