"""ops/job_lookup.py over a migrated SQLite database and a stub Redis: a task id, a correlation
id or an idempotency key each find the job, in that order, and say which matched."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import redis

from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import DeadLetter, DryRunEvent, Effect, JobRun, utcnow
from sandbox_platform.ops.job_lookup import find_job, nothing_matched

CORR = "corr-lookup-1"


class StubRedis:
    """Answers HGET from a dict of hashes; raises when told to."""

    def __init__(self, hashes: dict[str, dict[str, str]], fail: bool = False) -> None:
        self.hashes, self.fail, self.asked = hashes, fail, 0

    def hget(self, key: str, field: str) -> bytes | None:
        self.asked += 1
        if self.fail:
            raise redis.ConnectionError("refused")
        value = self.hashes.get(key, {}).get(field)
        return None if value is None else value.encode()


def _run(task_id: str, correlation_id: str | None, seconds: int) -> JobRun:
    return JobRun(
        task_id=task_id,
        task_name="shop.charge",
        correlation_id=correlation_id,
        mode="sandbox",
        state="succeeded",
        attempt=1,
        started_at=utcnow() - timedelta(minutes=5) + timedelta(seconds=seconds),
    )


@pytest.fixture
def db(sqlite_url: str) -> str:
    from sandbox_platform.db import migrate

    migrate.upgrade(sqlite_url)
    with session_scope(sqlite_url) as session:
        session.add_all(
            [
                _run("t-parent", CORR, 1),
                _run("t-child", CORR, 2),
                _run("t-alone", None, 3),
                _run("t-queued-first", CORR, 4),
                DryRunEvent(
                    action="payment",
                    function="shop.pay",
                    arguments={},
                    mode="sandbox",
                    task_id="t-dry",
                    correlation_id=CORR,
                ),
                Effect(idempotency_key="effect:order-1", task_id="t-child", correlation_id=None),
                DeadLetter(
                    task_id="t-dead",
                    task_name="shop.refund",
                    reason="retries_exhausted",
                    message={"headers": {"sp_idempotency_key": "shop.refund:order-9"}},
                    correlation_id="corr-dead",
                ),
            ]
        )
    return sqlite_url


def _redis(stub: StubRedis) -> Any:
    return lambda: stub


def test_a_task_id_shows_its_correlation_id_with_its_own_rows_marked(db: str) -> None:
    stub = StubRedis({})
    story = find_job(db, "t-child", _redis(stub))
    assert story.match is not None and story.match.to_dict() == {
        "kind": "task_id",
        "value": "t-child",
    }
    assert story.match.describe() == f"matched task id t-child (correlation id {CORR})"
    assert {e["task_id"] for e in story.entries} >= {"t-parent", "t-child", "t-dry"}
    assert [e["task_id"] for e in story.entries if e.get("matched_job")] == ["t-child"]
    assert stub.asked == 0  # Redis is only asked for an idempotency key


def test_a_task_id_found_only_on_a_dry_run_event_or_without_correlation_id(db: str) -> None:
    story = find_job(db, "t-dry")
    assert story.match is not None and story.match.kind == "task_id"
    assert story.correlation_id == CORR
    alone = find_job(db, "t-alone")
    assert alone.match is not None and alone.match.describe() == (
        "matched task id t-alone (correlation id (none))"
    )
    assert [e["task_id"] for e in alone.entries] == ["t-alone"]


def test_a_correlation_id_matches_as_before(db: str) -> None:
    story = find_job(db, CORR)
    assert story.match is not None and story.match.describe() == f"matched correlation id {CORR}"
    assert len(story.entries) == 4  # the effect row carries no correlation id
    assert not any(e.get("matched_job") for e in story.entries)


def test_idempotency_keys_from_an_effect_a_dead_letter_and_redis(db: str) -> None:
    stub = StubRedis({"sp:idem:r:{shop.charge:order-7}": {"tid": "t-queued-first 0af3"}})
    effect = find_job(db, "effect:order-1", _redis(stub))
    assert effect.match is not None and effect.match.describe() == (
        f"matched idempotency key effect:order-1 (task id t-child, correlation id {CORR})"
    )
    dead = find_job(db, "shop.refund:order-9", _redis(stub))
    assert dead.match is not None and dead.match.task_id == "t-dead"
    assert dead.correlation_id == "corr-dead"
    assert [e["kind"] for e in dead.entries] == ["dead_letter"]
    assert stub.asked == 0
    held = find_job(db, "shop.charge:order-7", _redis(stub))
    assert held.match is not None and held.match.to_dict() == {
        "kind": "idempotency_key",
        "value": "shop.charge:order-7",
    }
    assert held.match.task_id == "t-queued-first" and held.correlation_id == CORR
    assert [e["task_id"] for e in held.entries if e.get("matched_job")] == ["t-queued-first"]


def test_nothing_matched_names_all_three_kinds_and_what_was_not_checked(db: str) -> None:
    story = find_job(db, "nobody", _redis(StubRedis({})))
    assert story.match is None and story.entries == [] and story.unchecked is None
    assert nothing_matched("nobody") == (
        "nothing carries task id, correlation id or idempotency key 'nobody'"
    )
    down = find_job(db, "nobody", _redis(StubRedis({}, fail=True)))
    assert down.match is None and "not checked" in (down.unchecked or "")
