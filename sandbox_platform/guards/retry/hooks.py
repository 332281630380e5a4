"""What happens when a retry policy gives up: every hook of the hooks it was given gets an
:class:`ExhaustedEvent`.

Hooks belong to an :class:`ExhaustedHooks` object, never to the process: each app's runtime has
its own (its alert dispatcher is connected there, so one app's exhausted retries alert through
that app's sinks only), and a :class:`~sandbox_platform.guards.retry.RetryBackoffManager` fires
the hooks it was built with (its own, empty, by default). Hooks are held strongly under a uid;
a failing hook is logged loudly and never reaches the caller.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

__all__ = ["ExhaustedEvent", "ExhaustedHook", "ExhaustedHooks"]

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


def _hook_uid(callback: ExhaustedHook) -> str:
    module = getattr(callback, "__module__", "?")
    qualname = getattr(callback, "__qualname__", type(callback).__qualname__)
    return f"{module}.{qualname}:{id(callback)}"


class ExhaustedHooks:
    """The hooks one app (or one manager) calls when a retry policy gives up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hooks: dict[str, ExhaustedHook] = {}

    def on(self, callback: ExhaustedHook, *, uid: str | None = None) -> ExhaustedHook:
        """Register ``callback`` (held strongly) for every :class:`ExhaustedEvent`.

        Usable as a decorator. ``uid`` makes registration idempotent: a second hook with the
        same uid replaces the first (Django/Celery ``dispatch_uid``).
        """
        with self._lock:
            self._hooks[uid or _hook_uid(callback)] = callback
        return callback

    def off(self, callback: ExhaustedHook | None = None, *, uid: str | None = None) -> bool:
        """Unregister by uid or by the callback itself; True when something was removed."""
        with self._lock:
            if uid is not None:
                return self._hooks.pop(uid, None) is not None
            for key, hook in list(self._hooks.items()):
                if hook is callback:
                    del self._hooks[key]
                    return True
        return False

    def clear(self) -> None:
        """Forget every hook."""
        with self._lock:
            self._hooks.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._hooks)

    def fire(self, event: ExhaustedEvent) -> int:
        """Call every hook with ``event``; return how many succeeded.

        A failing hook is logged at error level with its traceback and the others still run;
        nothing propagates to the caller, whose own failure is what matters.
        """
        with self._lock:
            hooks = list(self._hooks.items())
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
