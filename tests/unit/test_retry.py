"""Retry policy, pure backoff, countdown lint, the tenacity-backed manager and exhaustion hooks."""

from __future__ import annotations

import random

import pytest
from structlog.testing import capture_logs

from sandbox_platform.core.context import bind_correlation_id
from sandbox_platform.core.errors import CountdownTooLongError, RetryExhausted
from sandbox_platform.guards.retry import (
    ExhaustedEvent,
    ExhaustedHooks,
    Jitter,
    RetryBackoffManager,
    RetryPolicy,
    check_countdown,
    compute_delay,
)

# -- RetryPolicy validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"max_retries": -1}, "max_retries must be >= 0"),
        ({"max_retries": 1.5}, "max_retries must be an int"),
        ({"base": -0.1}, "base must be >= 0"),
        ({"base": 10, "cap": 5}, "cap (5s) must be >= base (10s)"),
        ({"multiplier": 0.5}, "multiplier must be >= 1"),
        ({"cap": float("inf")}, "cap must be finite"),
        ({"jitter": "sometimes"}, "jitter must be one of full, equal, none"),
        ({"retry_on": ()}, "retry_on is empty"),
        ({"retry_on": (ValueError, "nope")}, "retry_on must be a tuple of exception classes"),
        ({"retry_on": (ValueError,), "dont_retry_on": (ValueError,)}, "ValueError in both"),
    ],
)
def test_policy_rejects_bad_values_with_clear_message(
    kwargs: dict[str, object], words: str
) -> None:
    with pytest.raises(ValueError, match=None) as info:
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
    assert words in str(info.value)


def test_policy_accepts_jitter_as_string_and_single_exception_class() -> None:
    policy = RetryPolicy(jitter="equal", retry_on=OSError, dont_retry_on=FileNotFoundError)  # type: ignore[arg-type]
    assert policy.jitter is Jitter.EQUAL
    assert policy.retry_on == (OSError,)
    assert policy.max_attempts == 4


def test_should_retry_counts_attempts_and_honours_dont_retry_on() -> None:
    policy = RetryPolicy(max_retries=2, retry_on=(OSError,), dont_retry_on=(FileNotFoundError,))
    assert policy.should_retry(OSError(), 1)
    assert policy.should_retry(OSError(), 2)
    assert not policy.should_retry(OSError(), 3)  # 3 attempts = max_retries + 1 used
    assert not policy.should_retry(FileNotFoundError(), 1)  # subclass excluded explicitly
    assert not policy.should_retry(ValueError(), 1)  # not in retry_on
    assert not policy.should_retry(KeyboardInterrupt(), 1)
    with pytest.raises(ValueError, match="1-based"):
        policy.should_retry(OSError(), 0)


# -- compute_delay ---------------------------------------------------------------------------


def test_no_jitter_is_exponential_and_capped() -> None:
    policy = RetryPolicy(base=1.0, cap=10.0, multiplier=2.0, jitter=Jitter.NONE)
    assert [compute_delay(policy, a) for a in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_huge_attempt_does_not_overflow() -> None:
    policy = RetryPolicy(base=1.0, cap=30.0, multiplier=10.0, jitter=Jitter.NONE)
    assert compute_delay(policy, 10_000) == 30.0


@pytest.mark.parametrize("jitter", list(Jitter))
def test_delays_stay_within_bounds_with_seeded_rng(jitter: Jitter) -> None:
    policy = RetryPolicy(base=0.5, cap=20.0, multiplier=3.0, jitter=jitter)
    rng = random.Random(1234)
    for attempt in range(1, 40):
        raw = min(policy.cap, policy.base * policy.multiplier ** (attempt - 1))
        for _ in range(50):
            delay = compute_delay(policy, attempt, rng)
            assert 0.0 <= delay <= policy.cap
            assert delay <= raw
            if jitter is Jitter.EQUAL:
                assert delay >= raw / 2
            if jitter is Jitter.NONE:
                assert delay == raw


def test_seeded_rng_makes_delays_reproducible_and_jitter_spreads() -> None:
    policy = RetryPolicy(base=1.0, cap=60.0)
    first = [compute_delay(policy, 5, random.Random(7)) for _ in range(3)]
    assert len(set(first)) == 1
    rng = random.Random(7)
    spread = {round(compute_delay(policy, 5, rng), 6) for _ in range(100)}
    assert len(spread) > 90  # full jitter really spreads the herd


def test_compute_delay_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match="1-based"):
        compute_delay(RetryPolicy(), 0)


# -- check_countdown -------------------------------------------------------------------------


def test_countdown_shorter_than_visibility_timeout_is_fine() -> None:
    check_countdown(3599, 3600)
    check_countdown(None, 3600)
    check_countdown(0, 3600)


@pytest.mark.parametrize("countdown", [3600, 7200.5])
def test_countdown_at_or_beyond_visibility_timeout_is_refused(countdown: float) -> None:
    with pytest.raises(CountdownTooLongError, match="visibility timeout of 3600s") as info:
        check_countdown(countdown, 3600)
    assert "again and again" in str(info.value)


def test_check_countdown_rejects_nonsense_visibility_timeout() -> None:
    with pytest.raises(ValueError, match="visibility timeout must be > 0"):
        check_countdown(1, 0)


# -- RetryBackoffManager (tenacity) ----------------------------------------------------------


class Flaky:
    def __init__(self, failures: int, exc: type[Exception] = OSError) -> None:
        self.failures = failures
        self.exc = exc
        self.calls = 0

    def __call__(self, value: int, *, scale: int = 1) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc(f"boom {self.calls}")
        return value * scale


def test_manager_succeeds_after_retries_and_records_requested_delays() -> None:
    sleeps: list[float] = []
    manager = RetryBackoffManager(
        max_retries=3, base_delay=1.0, max_delay=60.0, jitter=Jitter.NONE, sleep=sleeps.append
    )
    func = Flaky(failures=2)
    with capture_logs() as logs:
        result = manager.execute_with_retry(func, "charge", 21, backoff_multiplier=3.0, scale=2)
    assert result == 42
    assert func.calls == 3
    assert sleeps == [1.0, 3.0]
    retries = [e for e in logs if e["event"] == "retry_scheduled"]
    assert [(e["name"], e["attempt"], e["delay"]) for e in retries] == [
        ("charge", 1, 1.0),
        ("charge", 2, 3.0),
    ]
    stats = manager.stats()
    assert stats["attempts"] == 3
    assert stats["retries"] == 2
    assert stats["exhausted"] == 0
    assert stats["succeeded"] == 1
    assert [h["delay"] for h in stats["history"]] == [1.0, 3.0]


def test_manager_exhausts_after_max_retries_plus_one_attempts() -> None:
    sleeps: list[float] = []
    manager = RetryBackoffManager(
        max_retries=3, base_delay=0.5, max_delay=2.0, sleep=sleeps.append, rng=random.Random(3)
    )
    func = Flaky(failures=100)
    events: list[ExhaustedEvent] = []
    manager.hooks.on(events.append)
    with bind_correlation_id("cid-123"), pytest.raises(RetryExhausted) as info:
        manager.execute_with_retry(func, "send_email", 1)
    assert func.calls == 4 == manager.max_retries + 1
    assert info.value.attempts == 4
    assert info.value.name == "send_email"
    assert isinstance(info.value.last_error, OSError)
    assert isinstance(info.value.__cause__, OSError)
    assert len(sleeps) == 3
    assert all(0.0 <= s <= 2.0 for s in sleeps)
    assert manager.stats()["exhausted"] == 1
    [event] = events
    assert event.name == "send_email"
    assert event.attempts == 4
    assert event.correlation_id == "cid-123"
    assert "boom 4" in event.error


def test_manager_does_not_retry_excluded_errors_and_fires_no_hook() -> None:
    sleeps: list[float] = []
    manager = RetryBackoffManager(dont_retry_on=(PermissionError,), sleep=sleeps.append)
    events: list[ExhaustedEvent] = []
    manager.hooks.on(events.append)
    func = Flaky(failures=5, exc=PermissionError)
    with pytest.raises(PermissionError):
        manager.execute_with_retry(func, "delete_account", 1)
    assert func.calls == 1
    assert sleeps == []
    assert events == []
    assert manager.stats()["not_retried"] == 1


def test_manager_with_zero_retries_runs_once() -> None:
    manager = RetryBackoffManager(max_retries=0, sleep=lambda _s: None)
    func = Flaky(failures=1)
    with pytest.raises(RetryExhausted) as info:
        manager.execute_with_retry(func, "once", 1)
    assert func.calls == 1
    assert info.value.attempts == 1


# -- hooks -----------------------------------------------------------------------------------


def test_failing_hook_is_logged_loudly_and_does_not_stop_others() -> None:
    seen: list[str] = []

    def broken(_event: ExhaustedEvent) -> None:
        raise RuntimeError("hook bug")

    hooks = ExhaustedHooks()
    hooks.on(broken)
    hooks.on(lambda e: seen.append(e.name))
    with capture_logs() as logs:
        ok = hooks.fire(ExhaustedEvent(name="t", attempts=2, error="E()"))
    assert ok == 1
    assert seen == ["t"]
    [failure] = [e for e in logs if e["event"] == "retry_exhausted_hook_failed"]
    assert failure["log_level"] == "error"
    assert failure["exc_info"] is True
    assert failure["name"] == "t"


def test_hook_uid_makes_registration_idempotent_and_removable() -> None:
    calls: list[int] = []
    hooks = ExhaustedHooks()
    hooks.on(lambda _e: calls.append(1), uid="x")
    hooks.on(lambda _e: calls.append(2), uid="x")
    hooks.fire(ExhaustedEvent(name="t", attempts=1, error="E()"))
    assert calls == [2]
    assert hooks.off(uid="x")
    assert not hooks.off(uid="x")
    hooks.fire(ExhaustedEvent(name="t", attempts=1, error="E()"))
    assert calls == [2]


def test_hooks_belong_to_their_manager_not_to_the_process() -> None:
    """Two managers (two apps): one's exhausted retries reach its own hooks only."""
    first, second = RetryBackoffManager(max_retries=0), RetryBackoffManager(max_retries=0)
    seen: list[str] = []
    first.hooks.on(lambda e: seen.append(f"first:{e.name}"))
    second.hooks.on(lambda e: seen.append(f"second:{e.name}"))
    with pytest.raises(RetryExhausted):
        first.execute_with_retry(Flaky(failures=9), "a", 1)
    assert seen == ["first:a"]
    shared = ExhaustedHooks()
    third = RetryBackoffManager(max_retries=0, hooks=shared)
    shared.on(lambda e: seen.append(f"shared:{e.name}"))
    with pytest.raises(RetryExhausted):
        third.execute_with_retry(Flaky(failures=9), "b", 1)
    assert seen == ["first:a", "shared:b"] and third.hooks is shared


def test_manager_exhaustion_survives_a_broken_hook() -> None:
    def broken(_event: ExhaustedEvent) -> None:
        raise RuntimeError("hook bug")

    manager = RetryBackoffManager(max_retries=1, sleep=lambda _s: None)
    manager.hooks.on(broken)
    with pytest.raises(RetryExhausted):
        manager.execute_with_retry(Flaky(failures=9), "x", 1)
