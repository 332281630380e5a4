"""The countdown guard: a countdown or ETA the broker would redeliver early is refused.

Celery over Redis keeps a scheduled message unacknowledged; past the visibility timeout it is
delivered again, and again, so the task would run several times.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sandbox_platform.core.broker_kind import BrokerKind
from sandbox_platform.core.errors import CountdownTooLongError, InvalidDelayError
from sandbox_platform.core.settings import ENV_PREFIX
from sandbox_platform.guards.base import EnqueueCall, Guard
from sandbox_platform.guards.retry import check_countdown

__all__ = ["CountdownGuard", "countdown_of"]


def _number(task_name: str, countdown: object) -> float:
    if isinstance(countdown, bool) or not isinstance(countdown, int | float):
        raise InvalidDelayError(
            f"{task_name}: countdown must be a number of seconds, got "
            f"{type(countdown).__name__} {countdown!r}"
        )
    if not math.isfinite(countdown) or countdown < 0:
        raise InvalidDelayError(
            f"{task_name}: countdown must be finite and >= 0, got {countdown!r}"
        )
    return float(countdown)


def _moment(task_name: str, eta: object) -> datetime:
    if isinstance(eta, str):
        try:
            eta = datetime.fromisoformat(eta)
        except ValueError:
            raise InvalidDelayError(f"{task_name}: eta {eta!r} is not an ISO 8601 time") from None
    if not isinstance(eta, datetime):
        raise InvalidDelayError(
            f"{task_name}: eta must be a datetime (or an ISO 8601 string), got "
            f"{type(eta).__name__} {eta!r}; for seconds from now use countdown="
        )
    return eta if eta.tzinfo is not None else eta.replace(tzinfo=UTC)


def countdown_of(options: Mapping[str, Any], task_name: str = "task") -> float | None:
    """The delay asked for by ``countdown`` or ``eta`` (None: none); a clear
    :class:`InvalidDelayError` for a value of the wrong kind."""
    eta, countdown = options.get("eta"), options.get("countdown")
    if eta is not None and countdown is not None:
        raise InvalidDelayError(f"{task_name}: give countdown or eta, not both")
    if eta is None:
        return None if countdown is None else _number(task_name, countdown)
    return float((_moment(task_name, eta) - datetime.now(UTC)).total_seconds())


class CountdownGuard(Guard):
    """Raises :class:`~sandbox_platform.core.errors.CountdownTooLongError` at the call site."""

    name = "countdown"

    def at_enqueue(self, call: EnqueueCall) -> None:
        settings = call.services.settings
        if settings.broker_kind is BrokerKind.RABBITMQ:
            setting = f"{ENV_PREFIX}CONSUMER_TIMEOUT with the server's consumer_timeout"
        else:
            setting = f"{ENV_PREFIX}VISIBILITY_TIMEOUT"
        try:
            check_countdown(
                countdown_of(call.options, call.task_name),
                settings.redelivery_timeout,
                settings.redelivery_timeout_name,
                setting,
            )
        except CountdownTooLongError as exc:
            raise CountdownTooLongError(f"{call.task_name}: {exc}") from None
