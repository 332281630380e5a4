"""What happens when a retry policy gives up: every registered hook gets an ExhaustedEvent.

Hooks are held strongly under a uid; a failing hook is logged loudly and never reaches the
caller. :class:`~sandbox_platform.guards.retry.RetryBackoffManager` fires them; the alerts
layer connects here (``connect_retry_exhaustion``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

__all__ = [
    "ExhaustedEvent",
    "ExhaustedHook",
    "clear_exhausted_hooks",
    "fire_exhausted",
    "off_exhausted",
    "on_exhausted",
]

log = structlog.get_logger("sandbox_platform.guards.retry")


@dataclass(frozen=True)
class ExhaustedEvent:
    """A retry policy gave up on one piece of work."""

    name: str
    attempts: int
    error: str  # repr() of the last error
    correlation_id: str | None = None
    task_id: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)


ExhaustedHook = Callable[[ExhaustedEvent], object]

_hooks_lock = threading.Lock()
_hooks: dict[str, ExhaustedHook] = {}


def _hook_uid(callback: ExhaustedHook) -> str:
    module = getattr(callback, "__module__", "?")
    qualname = getattr(callback, "__qualname__", type(callback).__qualname__)
    return f"{module}.{qualname}:{id(callback)}"


def on_exhausted(callback: ExhaustedHook, *, uid: str | None = None) -> ExhaustedHook:
    """Register ``callback`` (held strongly) for every :class:`ExhaustedEvent`.

    Usable as a decorator. ``uid`` makes registration idempotent: a second hook with the same
    uid replaces the first (Django/Celery ``dispatch_uid``).
    """
    with _hooks_lock:
        _hooks[uid or _hook_uid(callback)] = callback
    return callback


def off_exhausted(callback: ExhaustedHook | None = None, *, uid: str | None = None) -> bool:
    """Unregister by uid or by the callback itself; True when something was removed."""
    with _hooks_lock:
        if uid is not None:
            return _hooks.pop(uid, None) is not None
        for key, hook in list(_hooks.items()):
            if hook is callback:
                del _hooks[key]
                return True
    return False


def clear_exhausted_hooks() -> None:
    """Forget every hook (tests)."""
    with _hooks_lock:
        _hooks.clear()


def fire_exhausted(event: ExhaustedEvent) -> int:
    """Call every hook with ``event``; return how many succeeded.

    A failing hook is logged at error level with its traceback and the others still run;
    nothing propagates to the caller, whose own failure is what matters.
    """
    with _hooks_lock:
        hooks = list(_hooks.items())
    ok = 0
    for uid, hook in hooks:
        try:
            hook(event)
        except Exception:
            log.exception(
                "retry_exhausted_hook_failed",
                hook=uid,
                name=event.name,
                correlation_id=event.correlation_id,
            )
        else:
            ok += 1
    return ok
