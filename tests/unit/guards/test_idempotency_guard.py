"""The idempotency guard: at enqueue, the same key answers with the first job's id (another
set of arguments under it is a conflict); at run, it contributes a claim to the admission,
stores the result of a success so a second run returns it unrun, releases the claim of a
failure, and re-queues a job whose key another worker holds."""

from __future__ import annotations

import pytest

from sandbox_platform.coordination.idempotency import IdempotencyStore, fingerprint
from sandbox_platform.core.context import IDEMPOTENCY_HEADER
from sandbox_platform.core.errors import IdempotencyConflict
from sandbox_platform.guards.base import Outcome
from sandbox_platform.guards.builtin import IdempotencyGuard
from sandbox_platform.testing import GuardHarness, run_concurrently
from tests.unit.guards.conftest import MakeHarness


def pay(order_id: int, amount: int) -> None: ...


def _harness(make_harness: MakeHarness, **options: object) -> GuardHarness:
    return make_harness(
        IdempotencyGuard(),
        name="t.pay",
        body=pay,
        options={"idempotency_key": "order-{order_id}", "idempotency_lease": 30, **options},
    )


def test_it_contributes_a_claim_and_dedupes_a_second_run(make_harness: MakeHarness) -> None:
    harness = _harness(make_harness)
    first = harness.job((42, 100))
    admitted = harness.admit(first)
    assert admitted.request is not None
    assert admitted.request.claim_key == "t.pay:order-42"
    assert admitted.request.fingerprint == fingerprint([42, 100], {})
    assert admitted.request.lease == 30
    assert admitted.outcome is None  # acquired: the job runs
    assert first.idempotency_key == "t.pay:order-42"
    assert first.headers[IDEMPOTENCY_HEADER] == "t.pay:order-42"  # a re-queue keeps the key
    assert first.fencing_token is not None and first.fencing_token >= 1
    harness.after_run(first, Outcome.succeeded({"charged": 100}))

    again = harness.admit(harness.job((42, 100)))  # delivered twice: not run again
    assert again.admission is not None and again.admission.status == "done"
    assert again.outcome is not None
    assert (again.outcome.state, again.outcome.value) == ("deduplicated", {"charged": 100})


def test_a_failed_run_releases_its_claim(make_harness: MakeHarness) -> None:
    harness = _harness(make_harness)
    first = harness.job((1, 5))
    assert harness.admit(first).outcome is None
    failure = harness.error(first, ValueError("declined"))  # no retry guard: dead letter
    harness.after_run(first, failure)
    retried = harness.job((1, 5))
    assert harness.admit(retried).outcome is None  # claimed again at once
    assert retried.fencing_token is not None and first.fencing_token is not None
    assert retried.fencing_token > first.fencing_token


def test_a_key_held_by_a_running_job_defers_the_other(make_harness: MakeHarness) -> None:
    harness = _harness(make_harness)
    assert harness.admit(harness.job((7, 1))).outcome is None  # running, lease 30 s
    outcome = harness.admit(harness.job((7, 1))).outcome
    assert outcome is not None
    assert outcome.kind == "defer"
    assert 0 < outcome.countdown <= 30  # until the holder's lease ends


def test_the_same_key_with_other_arguments_is_a_conflict(make_harness: MakeHarness) -> None:
    harness = _harness(make_harness)
    first = harness.job((9, 10))
    harness.admit(first)
    harness.after_run(first, Outcome.succeeded(None))
    outcome = harness.admit(harness.job((9, 99))).outcome
    assert outcome is not None
    assert (outcome.kind, outcome.reason) == ("dead_letter", "idempotency_conflict")
    assert isinstance(outcome.error, IdempotencyConflict)


def test_enqueue_answers_a_second_call_with_the_first_jobs_id(make_harness: MakeHarness) -> None:
    harness = _harness(make_harness)
    first = harness.enqueue(args=(5, 50))
    assert first.existing_id is None and first.task_id is not None
    assert first.options["headers"][IDEMPOTENCY_HEADER] == "t.pay:order-5"
    second = harness.enqueue(args=(5, 50))
    assert second.existing_id == first.task_id  # nothing published again
    conflict = r"^t\.pay: idempotency key 't\.pay:order-5' was used before with different"
    with pytest.raises(IdempotencyConflict, match=conflict):
        harness.enqueue(args=(5, 51))

    request = harness.admit(harness.delivery(first)).request  # the message's key is claimed
    assert request is not None and request.claim_key == "t.pay:order-5"


def test_without_dedupe_every_call_is_published(make_harness: MakeHarness) -> None:
    harness = _harness(make_harness, dedupe=False)
    assert harness.enqueue(args=(5, 50)).existing_id is None
    assert harness.enqueue(args=(5, 50)).existing_id is None


def test_threads_delivering_one_key_at_once_run_it_once(make_harness: MakeHarness) -> None:
    harness = _harness(make_harness)
    jobs = [harness.job((3, 30)) for _ in range(16)]
    outcomes = run_concurrently(lambda n: harness.admit(jobs[n]).outcome, threads=8, times=16)
    winners = [n for n, outcome in enumerate(outcomes) if outcome is None]
    assert len(winners) == 1
    assert all(o.kind == "defer" for o in outcomes if o is not None)
    harness.after_run(jobs[winners[0]], Outcome.succeeded("paid"))
    store = IdempotencyStore(harness.redis, harness.prefix)
    assert store.claim("t.pay:order-3", fingerprint([3, 30], {})).value() == "paid"
