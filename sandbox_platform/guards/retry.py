"""Retry policy: exponential backoff, capped, jittered; and what happens when it gives up.

Three layers, each usable alone:

* :class:`RetryPolicy` + :func:`compute_delay` -- a validated policy and a *pure* function of
  the attempt number (tenacity ``wait_exponential_jitter`` / dramatiq ``compute_backoff``).
  Tested without sleeping; used by the task layer (Celery countdowns) and by the webhook sink.
* :class:`RetryBackoffManager` -- the seed's in-process API, running a callable through
  ``tenacity.Retrying`` with the policy's wait and an injectable ``sleep``.
* an exhaustion hook registry (:func:`on_exhausted` / :func:`fire_exhausted`): when a policy
  gives up, every hook gets an :class:`ExhaustedEvent`. ``sandbox_platform.alerts`` connects
  here. Hook errors are logged loudly and never reach the caller.

:func:`check_countdown` refuses a countdown the broker would redeliver before it is due.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import structlog
import tenacity

from sandbox_platform.context import current_correlation_id
from sandbox_platform.errors import CountdownTooLongError, RetryExhausted

__all__ = [
    "ExhaustedEvent",
    "ExhaustedHook",
    "Jitter",
    "RetryBackoffManager",
    "RetryPolicy",
    "check_countdown",
    "clear_exhausted_hooks",
    "compute_delay",
    "fire_exhausted",
    "off_exhausted",
    "on_exhausted",
]

log = structlog.get_logger(__name__)

T = TypeVar("T")


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


def check_countdown(countdown_seconds: float | None, visibility_timeout_seconds: float) -> None:
    """Refuse a countdown/ETA the broker would redeliver before it is due.

    Celery over Redis keeps a scheduled message unacknowledged; past the visibility timeout it
    is delivered again, and again, so the task runs several times. Raises
    :class:`~sandbox_platform.errors.CountdownTooLongError`.
    """
    if visibility_timeout_seconds <= 0:
        raise ValueError(
            f"visibility timeout must be > 0 seconds, got {visibility_timeout_seconds}"
        )
    if countdown_seconds is None:
        return
    if countdown_seconds >= visibility_timeout_seconds:
        raise CountdownTooLongError(
            f"countdown of {countdown_seconds:g}s is not shorter than the broker's visibility "
            f"timeout of {visibility_timeout_seconds:g}s: Celery would redeliver the task "
            "again and again before it is due; shorten the countdown or raise "
            "broker_transport_options['visibility_timeout']"
        )


# -- exhaustion hooks ------------------------------------------------------------------------


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


# -- in-process retries (seed API) ------------------------------------------------------------


class _PolicyWait(tenacity.wait.wait_base):
    """A tenacity wait strategy backed by :func:`compute_delay`."""

    def __init__(self, policy: RetryPolicy, rng: random.Random | None) -> None:
        self.policy = policy
        self.rng = rng

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        return compute_delay(self.policy, retry_state.attempt_number, self.rng)


@dataclass(frozen=True)
class RetryRecord:
    """One scheduled retry, kept for status pages."""

    name: str
    attempt: int
    delay: float
    error: str


class RetryBackoffManager:
    """Run a callable, retrying failures with capped, jittered exponential backoff.

    ``execute_with_retry`` makes at most ``max_retries + 1`` attempts; when they are all used
    it fires the exhaustion hooks, then raises :class:`~sandbox_platform.errors.RetryExhausted`
    carrying the last error. An exception the policy does not retry (``dont_retry_on``, or not
    in ``retry_on``) propagates unchanged after its first attempt, and fires no hook.
    """

    def __init__(
        self,
        max_retries: int = 3,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        *,
        jitter: Jitter | str = Jitter.FULL,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        dont_retry_on: tuple[type[BaseException], ...] = (),
        history_size: int = 100,
    ) -> None:
        self.policy = RetryPolicy(
            max_retries=max_retries,
            base=base_delay,
            cap=max_delay,
            jitter=Jitter(jitter),
            retry_on=retry_on,
            dont_retry_on=dont_retry_on,
        )
        self._sleep = sleep
        self._rng = rng
        self._lock = threading.Lock()
        self._history: deque[RetryRecord] = deque(maxlen=history_size)
        self._counts = {
            "calls": 0,
            "attempts": 0,
            "retries": 0,
            "succeeded": 0,
            "exhausted": 0,
            "not_retried": 0,
        }

    @property
    def max_retries(self) -> int:
        return self.policy.max_retries

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def execute_with_retry(
        self,
        func: Callable[..., T],
        name: str,
        *args: Any,
        backoff_multiplier: float = 2.0,
        **kwargs: Any,
    ) -> T:
        """``func(*args, **kwargs)`` with retries; ``name`` labels logs, stats and alerts."""
        policy = self.policy
        if backoff_multiplier != policy.multiplier:
            policy = RetryPolicy(
                max_retries=policy.max_retries,
                base=policy.base,
                cap=policy.cap,
                multiplier=backoff_multiplier,
                jitter=policy.jitter,
                retry_on=policy.retry_on,
                dont_retry_on=policy.dont_retry_on,
            )
        self._count("calls")
        attempts = 0

        def attempt_once() -> T:
            nonlocal attempts
            attempts += 1
            self._count("attempts")
            return func(*args, **kwargs)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            delay = state.next_action.sleep if state.next_action else 0.0
            error = state.outcome.exception() if state.outcome else None
            record = RetryRecord(name, state.attempt_number, delay, repr(error))
            with self._lock:
                self._counts["retries"] += 1
                self._history.append(record)
            log.warning(
                "retry_scheduled",
                name=name,
                attempt=state.attempt_number,
                delay=round(delay, 6),
                error=repr(error),
            )

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(policy.max_attempts),
            wait=_PolicyWait(policy, self._rng),
            retry=tenacity.retry_if_exception(policy.is_retryable),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            result = retrying(attempt_once)
        except Exception as exc:
            if not policy.is_retryable(exc):
                self._count("not_retried")
                raise
            self._count("exhausted")
            log.error("retry_exhausted", name=name, attempts=attempts, error=repr(exc))
            fire_exhausted(
                ExhaustedEvent(
                    name=name,
                    attempts=attempts,
                    error=repr(exc),
                    correlation_id=current_correlation_id(),
                )
            )
            raise RetryExhausted(name, attempts, exc) from exc
        self._count("succeeded")
        return result

    def stats(self) -> dict[str, Any]:
        """Counters since construction and the most recent retries (newest last)."""
        with self._lock:
            return {
                **self._counts,
                "max_retries": self.policy.max_retries,
                "history": [asdict(r) for r in self._history],
            }

    def get_stats(self) -> dict[str, Any]:
        """Alias of :meth:`stats` for seed-style callers."""
        return self.stats()
