"""The poison guard counts a job's redeliveries after lost workers and quarantines it at
``poison_max_deliveries``; a warm-shutdown restore and a first delivery do not count, and a
redelivery of a job still running elsewhere (its idempotency key in flight) is taken back."""

from __future__ import annotations

from sandbox_platform.coordination.poison import mark_clean_restores, poison_keys
from sandbox_platform.guards.builtin import IdempotencyGuard, PoisonGuard
from tests.unit.guards.conftest import MakeHarness


def test_a_job_that_keeps_killing_workers_is_quarantined(make_harness: MakeHarness) -> None:
    harness = make_harness(PoisonGuard(), settings={"poison_max_deliveries": 3})
    assert harness.before_run(harness.job(task_id="p-1")) is None  # first delivery
    first, second = (harness.job(task_id="p-1", redelivered=True) for _ in range(2))
    assert harness.before_run(first) is None
    assert harness.before_run(second) is None
    assert repr(second.state) == "GuardState(_Redelivered)"  # counted: taken back if in flight

    outcome = harness.before_run(harness.job(task_id="p-1", redelivered=True))
    assert outcome is not None
    assert (outcome.kind, outcome.reason) == ("dead_letter", "poison")
    assert outcome.failed is False and outcome.record is False
    assert outcome.context == {"redeliveries": 3}
    assert harness.before_run(harness.job(task_id="p-2", redelivered=True)) is None  # per job


def test_a_warm_shutdown_restore_does_not_count(make_harness: MakeHarness) -> None:
    harness = make_harness(PoisonGuard(), settings={"poison_max_deliveries": 1})
    mark_clean_restores(harness.redis, harness.prefix, ["p-3"])
    assert harness.before_run(harness.job(task_id="p-3", redelivered=True)) is None
    assert harness.redis.get(poison_keys(harness.prefix, "p-3")[1]) is None
    assert harness.before_run(harness.job(task_id="p-3", redelivered=True)) is not None


def test_a_redelivery_of_a_job_still_running_elsewhere_is_taken_back(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(PoisonGuard(), IdempotencyGuard(), options={"idempotency_key": "k"})
    assert harness.admit(harness.job(task_id="p-4")).outcome is None  # running, key held
    again = harness.job(task_id="p-4", redelivered=True)  # past the visibility timeout
    assert harness.before_run(again) is None
    count = poison_keys(harness.prefix, "p-4")[1]
    assert harness.redis.get(count) == b"1"
    admitted = harness.admit(again)
    assert admitted.admission is not None and admitted.admission.status == "in_flight"
    assert harness.redis.get(count) == b"0"  # not a lost worker: uncounted
