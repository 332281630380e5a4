"""Admission made with the fetch, on a real worker and Redis.

A guarded job that runs at once carries its admission plan (``sp_admit``); the platform's
transport admits it inside the fetch script and the pipeline uses that answer only when the
plan is exactly the job's own. A plan that does not match (forged, or from another version of
the task) is released and the job admitted again; a job a guard stops before admission gives
back the claim the fetch made for it."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from sandbox_platform.coordination.governor import Governor
from sandbox_platform.core.context import ADMIT_HEADER, IDEMPOTENCY_HEADER, MODE_HEADER
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import DeadLetter, Effect
from tests.helpers import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("live_ready_limits")]
WORKER_APP = "tests.worker_app"
QUEUE = "sandbox_platform.sandbox"


def _effects(url: str) -> list[str]:
    with session_scope(url) as session:
        return sorted(session.scalars(select(Effect.idempotency_key)))


def _dead_letters(url: str) -> list[tuple[str, str]]:
    with session_scope(url) as session:
        return [(d.task_name, d.reason) for d in session.scalars(select(DeadLetter))]


def _queued_headers(redis_client) -> dict:  # type: ignore[no-untyped-def]
    import json

    (raw,) = redis_client.lrange(QUEUE, 0, -1)
    return dict(json.loads(raw)["headers"])


def test_a_job_that_runs_at_once_carries_its_plan_and_one_with_a_countdown_does_not(
    guarded, redis_client
) -> None:
    guarded.effect_once.delay("plan-1", 0.0, "plan-starts")
    plan = _queued_headers(redis_client)[ADMIT_HEADER]
    assert plan[0] == "tests.effect_once:plan-1"  # claim key, fingerprint, lease, ttl, takes
    assert plan[2] == 3000
    redis_client.delete(QUEUE)
    guarded.effect_once.apply_async(("plan-2", 0.0, "plan-starts"), countdown=1)
    assert ADMIT_HEADER not in _queued_headers(redis_client)
    redis_client.delete(QUEUE)
    guarded.charge.delay("charge-sink", 1)  # no idempotency key, no governor: nothing to plan
    assert ADMIT_HEADER not in _queued_headers(redis_client)


def test_a_plan_that_is_not_the_jobs_own_is_released_and_the_job_admitted_again(
    platform_app, worker_factory, redis_client, sqlite_url
) -> None:
    forged = ["forged-key", "0" * 64, 60000, 60000, [["test-bucket", 1]]]
    platform_app.send_task(
        "tests.effect_once",
        ("forged-order", 0.0, "forged-starts"),
        headers={ADMIT_HEADER: forged},
    )
    worker = worker_factory(platform_app, WORKER_APP)
    wait_until(lambda: _effects(sqlite_url) == ["effect:forged-order"], timeout=60)
    assert redis_client.llen("forged-starts") == 1
    forged_record = redis_client.hmget("sp:idem:r:{forged-key}", "token", "state")
    assert forged_record == [b"1", b"queued"]  # the fetch claimed it, and gave it back
    assert redis_client.exists("sp:idem:r:{tests.effect_once:forged-order}")  # done, stored
    wait_until(lambda: "does not match the job" in worker.log_text(), timeout=10)


def test_a_job_stopped_before_admission_gives_back_the_claim_of_the_fetch(
    guarded, platform_app, worker_factory, redis_client, sqlite_url
) -> None:
    Governor(redis_client, "sp").set_limit("test-bucket", 1000, 1.0)
    guarded.effect_once.apply_async(
        ("wrong-mode-order", 0.0, "wrong-mode-starts"), headers={MODE_HEADER: "live"}
    )
    headers = _queued_headers(redis_client)
    assert headers[IDEMPOTENCY_HEADER] == "tests.effect_once:wrong-mode-order"
    assert ADMIT_HEADER in headers
    worker_factory(platform_app, WORKER_APP)
    wait_until(
        lambda: _dead_letters(sqlite_url) == [("tests.effect_once", "wrong_mode")], timeout=60
    )
    key = "tests.effect_once:wrong-mode-order"
    record = f"sp:idem:r:{{{key}}}"
    wait_until(  # claimed with the fetch (token 1), then released: claimable again
        lambda: redis_client.hmget(record, "token", "state") == [b"1", b"queued"], timeout=10
    )
    assert redis_client.llen("wrong-mode-starts") == 0
