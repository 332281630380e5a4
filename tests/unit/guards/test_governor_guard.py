"""The governor guard contributes a take of each declared resource (its template filled from
the job's arguments) to the one admission round trip; a denial re-queues the job after the
bucket's wait (capped below the redelivery timeout) and reports it, an admission reports the
resources, and a cost no bucket can hold dead-letters the job."""

from __future__ import annotations

import math

import pytest

from sandbox_platform.coordination.admission import Admission
from sandbox_platform.coordination.governor import Governor
from sandbox_platform.core.errors import RateLimitedError
from sandbox_platform.guards.builtin import GovernorGuard
from sandbox_platform.guards.events import GovernorAdmitted, GovernorDenied
from sandbox_platform.testing import GuardHarness, run_concurrently
from tests.unit.guards.conftest import MakeHarness


def call_api(user_id: int, payload: str = "") -> None: ...


def _harness(make_harness: MakeHarness, **settings: object) -> GuardHarness:
    return make_harness(
        GovernorGuard(),
        name="t.api",
        body=call_api,
        options={"governor": ["payments", ("api:{user_id}", 2)]},
        settings=settings,
    )


def test_it_contributes_a_take_of_every_resource_filled_from_the_arguments(
    make_harness: MakeHarness,
) -> None:
    harness = _harness(make_harness)
    admitted = harness.admit(harness.job((7,)))
    assert admitted.request is not None
    assert admitted.request.takes == [("payments", 1), ("api:7", 2)]
    assert admitted.request.claim_key is None
    assert admitted.admission is not None and admitted.admission.status == "acquired"
    assert admitted.outcome is None  # unlimited resources: the job runs
    assert harness.events_of(GovernorAdmitted)[0].resources == ("payments", "api:7")


def test_a_denied_job_is_deferred_for_the_buckets_wait(make_harness: MakeHarness) -> None:
    harness = _harness(make_harness)
    Governor(harness.redis, harness.prefix).set_limit("api:7", 4, 60)  # two jobs' worth
    assert [harness.admit(harness.job((7,))).outcome for _ in range(2)] == [None, None]

    job = harness.job((7,))
    denied = harness.admit(job)
    assert denied.admission is not None and denied.admission.status == "denied"
    outcome = denied.outcome
    assert outcome is not None
    assert (outcome.kind, outcome.state) == ("defer", "deferred")
    assert 0 < outcome.countdown <= 30  # 2 tokens back at 4 per 60 s
    [event] = harness.events_of(GovernorDenied)
    assert (event.task, event.task_id, event.resource) == ("t.api", job.task_id, "api:7")
    assert event.wait_seconds == outcome.countdown
    assert harness.admit(harness.job((8,))).outcome is None  # another user's bucket
    assert len(harness.events_of(GovernorAdmitted)) == 3


def test_a_deferral_stays_below_the_redelivery_timeout(make_harness: MakeHarness) -> None:
    harness = _harness(make_harness, visibility_timeout=10)
    answer = Admission("denied", wait_seconds=3600.0, resource="api:7")
    outcome = harness.admit(harness.job((7,)), answer).outcome
    assert outcome is not None and outcome.kind == "defer"
    assert outcome.countdown == pytest.approx(9.0)


def test_a_cost_no_bucket_can_hold_is_dead_lettered(make_harness: MakeHarness) -> None:
    harness = _harness(make_harness)
    Governor(harness.redis, harness.prefix).set_limit("api:7", 1, 60)  # capacity 1 < cost 2
    outcome = harness.admit(harness.job((7,))).outcome
    assert outcome is not None
    assert (outcome.kind, outcome.reason) == ("dead_letter", "over_capacity")
    assert isinstance(outcome.error, RateLimitedError)
    assert harness.events_of(GovernorDenied) == []


def test_threads_sharing_the_guard_never_take_more_than_the_quota(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(GovernorGuard(), body=call_api, options={"governor": "api:{user_id}"})
    Governor(harness.redis, harness.prefix).set_limit("api:1", 5, 3600)
    outcomes = run_concurrently(
        lambda _: harness.admit(harness.job((1,))).outcome, threads=8, times=24
    )
    assert sum(outcome is None for outcome in outcomes) == 5
    assert all(o.kind == "defer" for o in outcomes if o is not None)
    assert len(harness.events_of(GovernorAdmitted)) == 5
    assert len(harness.events_of(GovernorDenied)) == 19
    assert all(not math.isinf(e.wait_seconds) for e in harness.events_of(GovernorDenied))


def test_a_template_naming_no_argument_is_refused_at_declaration(
    make_harness: MakeHarness,
) -> None:
    refused = r"^t\.api: governor '{org}' names 'org', which is not an argument of the task"
    with pytest.raises(ValueError, match=refused):
        make_harness(GovernorGuard(), name="t.api", body=call_api, options={"governor": "{org}"})
