"""Platform events other parts subscribe to: governor denials, dry-run intercepts.

(Retry exhaustion has its own hook in :mod:`sandbox_platform.guards.retry`.) Callbacks are
held strongly under a uid (connecting twice replaces); a failing callback is logged loudly
and never breaks the job that fired the event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

__all__ = ["fire_denied", "fire_intercepted", "on_denied", "on_intercepted"]

log = structlog.get_logger(__name__)

DeniedHook = Callable[[str, str, float], None]
InterceptedHook = Callable[[dict[str, Any]], None]

_denied: dict[str, DeniedHook] = {}
_intercepted: dict[str, InterceptedHook] = {}


def on_denied(callback: DeniedHook, *, uid: str) -> None:
    """``callback(task_name, resource, wait_seconds)`` after each governor denial."""
    _denied[uid] = callback


def on_intercepted(callback: InterceptedHook, *, uid: str) -> None:
    """``callback(event)`` after each dry-run intercept (the recorded event as a dict)."""
    _intercepted[uid] = callback


def fire_denied(task_name: str, resource: str, wait_seconds: float) -> None:
    for uid, callback in list(_denied.items()):
        try:
            callback(task_name, resource, wait_seconds)
        except Exception:
            log.exception("denial hook failed", hook=uid)


def fire_intercepted(event: dict[str, Any]) -> None:
    for uid, callback in list(_intercepted.items()):
        try:
            callback(event)
        except Exception:
            log.exception("intercept hook failed", hook=uid)
