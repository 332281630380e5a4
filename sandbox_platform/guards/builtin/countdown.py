"""The countdown guard: a countdown or ETA the broker would redeliver early is refused.

Celery over Redis keeps a scheduled message unacknowledged; past the visibility timeout it is
delivered again, and again, so the task would run several times.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sandbox_platform.core.errors import CountdownTooLongError
from sandbox_platform.guards.base import EnqueueCall, Guard
from sandbox_platform.guards.retry import check_countdown

__all__ = ["CountdownGuard", "countdown_of"]


def countdown_of(options: Mapping[str, Any]) -> float | None:
    """The delay asked for by ``countdown`` or ``eta`` (None: none)."""
    eta = options.get("eta")
    if eta is None:
        countdown: float | None = options.get("countdown")
        return countdown
    if isinstance(eta, str):
        eta = datetime.fromisoformat(eta)
    if eta.tzinfo is None:
        eta = eta.replace(tzinfo=UTC)
    return float((eta - datetime.now(UTC)).total_seconds())


class CountdownGuard(Guard):
    """Raises :class:`~sandbox_platform.core.errors.CountdownTooLongError` at the call site."""

    name = "countdown"
    order = 35

    def at_enqueue(self, call: EnqueueCall) -> None:
        visibility = call.services.settings.visibility_timeout
        try:
            check_countdown(countdown_of(call.options), visibility)
        except CountdownTooLongError as exc:
            raise CountdownTooLongError(f"{call.task_name}: {exc}") from None
