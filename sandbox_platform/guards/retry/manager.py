"""The seed's in-process retries: run a callable through ``tenacity.Retrying`` with the
policy's wait and an injectable ``sleep``."""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import structlog
import tenacity

from sandbox_platform.core.context import current_correlation_id
from sandbox_platform.core.errors import RetryExhausted
from sandbox_platform.guards.retry.hooks import ExhaustedEvent, ExhaustedHooks
from sandbox_platform.guards.retry.policy import Jitter, RetryPolicy, compute_delay

__all__ = ["RetryBackoffManager", "RetryRecord"]

log = structlog.get_logger("sandbox_platform.guards.retry")

T = TypeVar("T")


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
    it fires the exhaustion hooks, then raises :class:`~sandbox_platform.core.errors.RetryExhausted`
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
        hooks: ExhaustedHooks | None = None,
    ) -> None:
        self.policy = RetryPolicy(
            max_retries=max_retries,
            base=base_delay,
            cap=max_delay,
            jitter=Jitter(jitter),
            retry_on=retry_on,
            dont_retry_on=dont_retry_on,
        )
        #: called when the policy gives up (pass an app runtime's to alert through its sinks)
        self.hooks = hooks if hooks is not None else ExhaustedHooks()
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
            policy = dataclasses.replace(policy, multiplier=backoff_multiplier)
        self._count("calls")
        attempts = 0

        def attempt_once() -> T:
            nonlocal attempts
            attempts += 1
            self._count("attempts")
            return func(*args, **kwargs)

        try:
            result = self._retrying(policy, name)(attempt_once)
        except Exception as exc:
            if not policy.is_retryable(exc):
                self._count("not_retried")
                raise
            self._count("exhausted")
            log.error("retry_exhausted", name=name, attempts=attempts, error=repr(exc))
            self.hooks.fire(
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

    def _retrying(self, policy: RetryPolicy, name: str) -> tenacity.Retrying:
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

        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(policy.max_attempts),
            wait=_PolicyWait(policy, self._rng),
            retry=tenacity.retry_if_exception(policy.is_retryable),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )

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
