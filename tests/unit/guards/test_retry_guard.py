"""The retry guard decides what a failed run becomes: a retry with the task's policy (its delay
capped below the broker's redelivery timeout) while attempts are left, else a dead letter
(retries exhausted, not retryable, or the reason the exception names)."""

from __future__ import annotations

import pytest

from sandbox_platform.guards.builtin import RetryGuard
from sandbox_platform.guards.retry import Jitter, RetryPolicy
from tests.unit.guards.conftest import MakeHarness

POLICY = RetryPolicy(
    max_retries=2, base=2.0, cap=30.0, jitter=Jitter.NONE, dont_retry_on=(KeyError,)
)


def test_a_failure_with_attempts_left_is_retried_after_the_policys_delay(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(RetryGuard(), options={"retry": POLICY})
    error = ValueError("flaky")
    first = harness.error(harness.job(retries=0), error)
    assert (first.kind, first.state) == ("retry", "retrying")
    assert first.error is error
    assert (first.countdown, first.max_retries) == (2.0, 2)
    assert harness.error(harness.job(retries=1), error).countdown == 4.0  # base * 2 ** 1


def test_the_last_attempts_failure_is_dead_lettered_retries_exhausted(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(RetryGuard(), options={"retry": POLICY})
    error = ValueError("still flaky")
    outcome = harness.error(harness.job(retries=2), error)  # attempt 3 of 1 + 2 retries
    assert (outcome.kind, outcome.reason) == ("dead_letter", "retries_exhausted")
    assert outcome.error is error
    assert outcome.failed is True


def test_an_exception_the_policy_does_not_retry_is_dead_lettered_at_once(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(RetryGuard(), options={"retry": POLICY})
    outcome = harness.error(harness.job(retries=0), KeyError("missing"))
    assert (outcome.kind, outcome.reason, outcome.failed) == ("dead_letter", "non_retryable", True)


def test_an_exception_naming_its_dead_letter_reason_is_not_retried(
    make_harness: MakeHarness,
) -> None:
    class SimulatorBroke(RuntimeError):
        dead_letter_reason = "simulation_failed"

    harness = make_harness(RetryGuard(), options={"retry": POLICY})
    outcome = harness.error(harness.job(retries=0), SimulatorBroke("bug"))
    assert (outcome.kind, outcome.reason) == ("dead_letter", "simulation_failed")


def test_a_delay_the_broker_would_not_wait_for_is_capped_below_it(
    make_harness: MakeHarness,
) -> None:
    policy = RetryPolicy(max_retries=5, base=100.0, cap=1000.0, jitter=Jitter.NONE)
    harness = make_harness(
        RetryGuard(), options={"retry": policy}, settings={"visibility_timeout": 50}
    )
    outcome = harness.error(harness.job(), RuntimeError("down"))
    assert outcome.kind == "retry"
    assert outcome.countdown == pytest.approx(45.0)  # 0.9 x the visibility timeout


def test_the_default_policy_retries_three_times(make_harness: MakeHarness) -> None:
    harness = make_harness(RetryGuard())
    assert [harness.error(harness.job(retries=n), OSError()).kind for n in range(4)] == [
        "retry",
        "retry",
        "retry",
        "dead_letter",
    ]


def test_the_retry_option_must_be_a_policy(make_harness: MakeHarness) -> None:
    with pytest.raises(ValueError, match=r"^t\.x: retry must be a RetryPolicy, not int"):
        make_harness(RetryGuard(), name="t.x", options={"retry": 3})
