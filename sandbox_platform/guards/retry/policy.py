"""The retry policy and its pure backoff: exponential, capped, jittered.

:func:`compute_delay` is a *pure* function of the attempt number (tenacity
``wait_exponential_jitter`` / dramatiq ``compute_backoff``), tested without sleeping.
:func:`check_countdown` refuses a countdown the broker would redeliver before it is due.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import StrEnum

from sandbox_platform.core.errors import CountdownTooLongError

__all__ = ["Jitter", "RetryPolicy", "check_countdown", "compute_delay"]


class Jitter(StrEnum):
    """How randomness spreads the delay (AWS "Exponential Backoff And Jitter")."""

    FULL = "full"  # uniform(0, d): best spread, may retry immediately
    EQUAL = "equal"  # d/2 + uniform(0, d/2): at least half the backoff
    NONE = "none"  # d: deterministic


def _exception_types(name: str, value: object) -> tuple[type[BaseException], ...]:
    if isinstance(value, type):
        value = (value,)
    if not isinstance(value, tuple) or not all(
        isinstance(item, type) and issubclass(item, BaseException) for item in value
    ):
        raise ValueError(f"RetryPolicy.{name} must be a tuple of exception classes, got {value!r}")
    return value


@dataclass(frozen=True)
class RetryPolicy:
    """When to retry and how long to wait. Validated on construction.

    ``max_retries`` counts retries, so a job runs at most ``max_retries + 1`` times.
    ``dont_retry_on`` wins over ``retry_on`` for an exception matching both.
    """

    max_retries: int = 3
    base: float = 1.0
    cap: float = 60.0
    multiplier: float = 2.0
    jitter: Jitter = Jitter.FULL
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    dont_retry_on: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise ValueError(f"RetryPolicy.max_retries must be an int, got {self.max_retries!r}")
        if self.max_retries < 0:
            raise ValueError(f"RetryPolicy.max_retries must be >= 0, got {self.max_retries}")
        for name in ("base", "cap", "multiplier"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"RetryPolicy.{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"RetryPolicy.{name} must be finite, got {value!r}")
        if self.base < 0:
            raise ValueError(f"RetryPolicy.base must be >= 0 seconds, got {self.base}")
        if self.cap < self.base:
            raise ValueError(
                f"RetryPolicy.cap ({self.cap}s) must be >= base ({self.base}s): "
                "the cap bounds every delay"
            )
        if self.multiplier < 1:
            raise ValueError(
                f"RetryPolicy.multiplier must be >= 1 (delays never shrink), got {self.multiplier}"
            )
        try:
            object.__setattr__(self, "jitter", Jitter(self.jitter))
        except ValueError:
            choices = ", ".join(j.value for j in Jitter)
            raise ValueError(
                f"RetryPolicy.jitter must be one of {choices}, got {self.jitter!r}"
            ) from None
        retry_on = _exception_types("retry_on", self.retry_on)
        dont = _exception_types("dont_retry_on", self.dont_retry_on)
        if not retry_on:
            raise ValueError("RetryPolicy.retry_on is empty: use max_retries=0 to never retry")
        overlap = sorted(t.__qualname__ for t in set(retry_on) & set(dont))
        if overlap:
            raise ValueError(
                f"RetryPolicy: {', '.join(overlap)} in both retry_on and dont_retry_on"
            )
        object.__setattr__(self, "retry_on", retry_on)
        object.__setattr__(self, "dont_retry_on", dont)

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1

    def is_retryable(self, exc: BaseException) -> bool:
        """Whether ``exc``'s type is one this policy retries (attempt count aside)."""
        if isinstance(exc, self.dont_retry_on):
            return False
        return isinstance(exc, self.retry_on)

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """Whether to run again after attempt number ``attempt`` (1-based) raised ``exc``."""
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt}")
        return attempt <= self.max_retries and self.is_retryable(exc)


def compute_delay(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based). Always within [0, cap].

    ``base * multiplier ** (attempt - 1)`` capped at ``cap``, then jittered. Pure apart from
    ``rng`` (pass a seeded :class:`random.Random` to make it deterministic).
    """
    if attempt < 1:
        raise ValueError(f"attempt is 1-based, got {attempt}")
    try:
        delay = min(policy.cap, policy.base * policy.multiplier ** (attempt - 1))
    except OverflowError:
        delay = policy.cap
    if policy.jitter is Jitter.FULL:
        delay = (rng or random).uniform(0.0, delay)
    elif policy.jitter is Jitter.EQUAL:
        delay = delay / 2 + (rng or random).uniform(0.0, delay / 2)
    return min(max(delay, 0.0), policy.cap)


def check_countdown(
    countdown_seconds: float | None,
    visibility_timeout_seconds: float,
    timeout_name: str = "visibility timeout",
    setting: str = "broker_transport_options['visibility_timeout']",
) -> None:
    """Refuse a countdown/ETA the broker would redeliver before it is due.

    Celery over Redis keeps a scheduled message unacknowledged; past the visibility timeout it
    is delivered again, and again, so the task runs several times. Over RabbitMQ the worker
    holds it unacknowledged too, and past the server's consumer timeout RabbitMQ closes the
    channel and requeues it (``timeout_name`` and ``setting`` name that bound). Raises
    :class:`~sandbox_platform.core.errors.CountdownTooLongError`.
    """
    if visibility_timeout_seconds <= 0:
        raise ValueError(
            f"visibility timeout must be > 0 seconds, got {visibility_timeout_seconds}"
        )
    if countdown_seconds is None:
        return
    if countdown_seconds >= visibility_timeout_seconds:
        raise CountdownTooLongError(
            f"countdown of {countdown_seconds:g}s is not shorter than the broker's {timeout_name} "
            f"of {visibility_timeout_seconds:g}s: the broker would redeliver the task "
            f"again and again before it is due; shorten the countdown or raise {setting}"
        )
