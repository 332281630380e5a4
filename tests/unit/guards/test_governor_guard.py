"""The governor guard contributes a take of each declared resource (its template filled from
the job's arguments) to the one admission round trip; a denial re-queues the job after the
bucket's wait (capped below the redelivery timeout) and reports it, an admission reports the
resources, and a cost no bucket can hold dead-letters the job."""

from __future__ import annotations

import math
import time

import pytest

from sandbox_platform.coordination.admission import Admission
from sandbox_platform.coordination.governor import Governor
from sandbox_platform.core.errors import RateLimitedError
from sandbox_platform.guards.builtin import GovernorGuard
from sandbox_platform.guards.builtin.governor import WAITING_SINCE_HEADER, waiting_since
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


def test_a_first_deferral_stamps_the_message_and_a_later_one_reports_the_wait(
    make_harness: MakeHarness,
) -> None:
    harness = _harness(make_harness)
    answer = Admission("denied", wait_seconds=2.0, resource="api:7")
    before = time.time()
    first = harness.job((7,))
    assert harness.admit(first, answer).outcome is not None
    since = first.headers[WAITING_SINCE_HEADER]  # what the re-queued message carries
    assert before <= since <= time.time()
    assert harness.events_of(GovernorDenied)[0].waited_seconds == 0.0

    again = harness.job((7,), headers={WAITING_SINCE_HEADER: since - 30})  # 30 s later
    assert harness.admit(again, answer).outcome is not None
    assert again.headers[WAITING_SINCE_HEADER] == since - 30  # the first deferral's, kept
    event = harness.events_of(GovernorDenied)[1]
    assert 30 <= event.waited_seconds < 31
    assert event.wait_seconds == 2.0


def test_an_admitted_job_carries_no_waiting_stamp(make_harness: MakeHarness) -> None:
    harness = _harness(make_harness)
    job = harness.job((7,), headers={WAITING_SINCE_HEADER: time.time() - 5})
    assert harness.admit(job).outcome is None
    assert WAITING_SINCE_HEADER not in job.headers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, 100.0),
        (40.5, 40.5),
        (40, 40.0),
        ("40.5", 40.5),
        ("soon", 100.0),
        (True, 100.0),
        (150.0, 100.0),  # later than now: another host's clock ahead, counted from now
        (float("nan"), 100.0),
        ([1], 100.0),
    ],
)
def test_waiting_since_reads_the_header_or_falls_back_to_now(
    value: object, expected: float
) -> None:
    assert waiting_since(value, 100.0) == expected


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
