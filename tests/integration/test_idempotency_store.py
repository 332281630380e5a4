"""The idempotency store against a real Redis (and PostgreSQL for effects)."""

from __future__ import annotations

import json
import multiprocessing as mp
import time
import uuid
from collections.abc import Callable
from multiprocessing.synchronize import Event
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from sandbox_platform.coordination.idempotency import (
    Claim,
    IdempotencyManager,
    IdempotencyStore,
    fingerprint,
    record_effect,
)
from sandbox_platform.core.context import bind_correlation_id
from sandbox_platform.core.errors import IdempotencyConflict, IdempotencyInFlight
from sandbox_platform.db.engine import get_engine, session_scope
from sandbox_platform.db.models import Base, Effect
from tests.helpers import wait_until

FP = fingerprint(("order-1",), {"amount": 10})


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store(redis_client: redis.Redis, prefix: str) -> IdempotencyStore:
    return IdempotencyStore(redis_client, prefix=prefix)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def claim_until(store: IdempotencyStore, key: str, status: str, timeout: float, **kw: Any) -> Claim:
    """Claim repeatedly until the answer has ``status`` (deadline ``timeout``)."""
    answers: list[Claim] = []

    def ready() -> bool:
        answers.append(store.claim(key, FP, **kw))
        return answers[-1].status == status

    wait_for(ready, timeout, f"claim status {status!r}")
    return answers[-1]


def test_claim_complete_replay(store: IdempotencyStore) -> None:
    first = store.claim("k", FP)
    assert first.status == "acquired"
    assert first.token == 1
    assert first.lease_seconds == 300
    second = store.claim("k", FP)
    assert second.status == "in_flight"
    assert second.token == 1
    assert 299 < second.lease_seconds <= 300
    assert store.complete("k", first.token, json.dumps({"charged": 10}))
    done = store.claim("k", FP)
    assert done.status == "done"
    assert done.value() == {"charged": 10}
    assert store.count() == 1


def test_same_key_other_arguments_is_a_conflict(store: IdempotencyStore) -> None:
    claim = store.claim("k", FP)
    other = fingerprint(("order-1",), {"amount": 11})
    assert store.claim("k", other).status == "conflict"
    store.complete("k", claim.token, "1")
    assert store.claim("k", other).status == "conflict"  # also once done (Stripe)


def test_expired_lease_is_reclaimable_with_a_larger_token(store: IdempotencyStore) -> None:
    crashed = store.claim("k", FP, lease_seconds=0.2)
    assert crashed.status == "acquired"
    assert store.claim("k", FP, lease_seconds=0.2).status == "in_flight"
    second = claim_until(store, "k", "acquired", 5, lease_seconds=30)
    assert second.token > crashed.token
    # the crashed holder comes back: its stale token can neither complete nor release
    assert not store.complete("k", crashed.token, '"late"')
    assert not store.release("k", crashed.token)
    assert not store.extend("k", crashed.token, 60)
    assert store.complete("k", second.token, '"ok"')
    assert store.claim("k", FP).value() == "ok"


def test_release_lets_a_retry_run(store: IdempotencyStore) -> None:
    first = store.claim("k", FP)
    assert store.release("k", first.token)
    retry = store.claim("k", FP)
    assert retry.status == "acquired"
    assert retry.token == first.token + 1


def test_extend_renews_the_lease(store: IdempotencyStore) -> None:
    claim = store.claim("k", FP, lease_seconds=0.3)
    assert store.extend("k", claim.token, 30)
    seconds, micros = store.client.time()
    end = seconds + micros / 1e6 + 0.5

    def past_old_lease() -> bool:
        now_s, now_us = store.client.time()
        return now_s + now_us / 1e6 > end

    wait_for(past_old_lease, 5, "the original lease to pass")
    held = store.claim("k", FP)
    assert held.status == "in_flight"
    assert held.lease_seconds > 25


def test_done_key_runs_again_after_its_ttl(store: IdempotencyStore) -> None:
    first = store.claim("k", FP, lease_seconds=1, ttl_seconds=1)
    assert store.complete("k", first.token, "1")
    assert store.claim("k", FP).status == "done"
    again = claim_until(store, "k", "acquired", 5)
    assert again.token > first.token  # the fence outlives its record


def test_manager_runs_once_and_replays(store: IdempotencyStore) -> None:
    calls: list[int] = []

    def charge(amount: int) -> dict[str, int]:
        calls.append(amount)
        return {"charged": amount}

    manager = IdempotencyManager(store)
    assert manager.process_idempotent("order-1", charge, 10) == {"charged": 10}
    assert manager.process_idempotent("order-1", charge, 10) == {"charged": 10}
    assert calls == [10]
    assert manager.count() == 1
    with pytest.raises(IdempotencyConflict):
        manager.process_idempotent("order-1", charge, 11)


def test_manager_in_flight_and_failure(redis_client: redis.Redis, prefix: str) -> None:
    manager = IdempotencyManager(redis_client, prefix)
    holder = manager.store.claim("k", fingerprint((1,), {}))
    with pytest.raises(IdempotencyInFlight):
        manager.process_idempotent("k", lambda x: x, 1)
    manager.store.release("k", holder.token)

    def boom(_x: int) -> None:
        raise RuntimeError("partner API down")

    with pytest.raises(RuntimeError, match="partner"):
        manager.process_idempotent("k", boom, 1)
    assert manager.process_idempotent("k", lambda x: x * 2, 1) == 2  # released: runs again


# --- many processes, one key ----------------------------------------------------------------


def _claimer(url: str, prefix: str, go: Event, out: Any) -> None:
    client = redis.Redis.from_url(url)
    store = IdempotencyStore(client, prefix)
    go.wait(30)
    deadline = time.monotonic() + 30
    first = store.claim("pay-1", FP, lease_seconds=60)
    if first.status == "acquired":
        client.incr(f"{prefix}:test:executions")
        # hold the key until every other process has seen it in flight
        while int(client.get(f"{prefix}:test:seen") or 0) < 19 and time.monotonic() < deadline:
            time.sleep(0.005)
        store.complete(
            "pay-1", first.token, json.dumps({"charge": "ch_1", "pid": mp.current_process().pid})
        )
        out.put((first.status, store.claim("pay-1", FP).result))
        return
    if first.status == "in_flight":
        client.incr(f"{prefix}:test:seen")
    claim = first
    while claim.status != "done" and time.monotonic() < deadline:
        time.sleep(0.01)
        claim = store.claim("pay-1", FP, lease_seconds=60)
    out.put((first.status, claim.result))


def test_twenty_processes_one_key_one_execution(
    store: IdempotencyStore, redis_url: str, processes: list[mp.process.BaseProcess]
) -> None:
    ctx = mp.get_context("fork")
    go, out = ctx.Event(), ctx.Queue()
    for _ in range(20):
        proc = ctx.Process(target=_claimer, args=(redis_url, store.prefix, go, out))
        proc.start()
        processes.append(proc)
    go.set()
    answers = [out.get(timeout=60) for _ in range(20)]
    for child in processes:
        child.join(10)
        assert child.exitcode == 0
    firsts = sorted(status for status, _ in answers)
    assert firsts == ["acquired"] + ["in_flight"] * 19
    assert int(store.client.get(f"{store.prefix}:test:executions") or 0) == 1
    results = {result for _, result in answers}
    assert len(results) == 1
    assert json.loads(results.pop())["charge"] == "ch_1"


# --- effects in the database ------------------------------------------------------------------


@pytest.mark.parametrize("db", ["pg_url", "sqlite_url"])
def test_record_effect_inserts_once(db: str, request: pytest.FixtureRequest) -> None:
    url: str = request.getfixturevalue(db)
    Base.metadata.create_all(get_engine(url))
    with session_scope(url) as session, bind_correlation_id("cid-1"):
        assert record_effect(session, "pay-1", task_id="t1", fencing_token=1, result={"ok": 1})
    with session_scope(url) as session:
        duplicate = record_effect(session, "pay-1", task_id="t2", fencing_token=2, result=None)
        assert duplicate is False
        # the outer transaction survived the duplicate: it can still write and commit
        assert record_effect(session, "pay-2", task_id="t3", fencing_token=1, result=None)
    with session_scope(url) as session:
        rows = session.execute(sa.select(Effect).order_by(Effect.idempotency_key)).scalars().all()
        assert [(r.idempotency_key, r.task_id, r.fencing_token) for r in rows] == [
            ("pay-1", "t1", 1),
            ("pay-2", "t3", 1),
        ]
        assert rows[0].correlation_id == "cid-1"
        assert rows[0].result == {"ok": 1}


def test_one_key_holds_the_dedupe_the_claim_and_the_token(redis_client) -> None:
    """An idempotency key is one Redis hash (enqueue mark, claim, result, fencing token); once
    it ends, only its token stays (for an hour), so a new holder's token is still larger."""
    store = IdempotencyStore(redis_client, "sp")
    claim = store.claim("one", "fp-1", lease_seconds=60, ttl_seconds=0.2)
    assert store.complete("one", claim.token, '"ok"')
    assert redis_client.keys("sp:*") == [b"sp:idem:r:{one}"]
    wait_until(lambda: store.claim("one", "fp-2").status == "acquired", timeout=10)
    assert redis_client.hget("sp:idem:r:{one}", "token") == str(claim.token + 1).encode()
    assert 3_500_000 < redis_client.pttl("sp:idem:r:{one}") <= 3_600_000 + 86_400_000


def test_a_fence_written_before_0_2_keeps_tokens_growing(redis_client) -> None:
    """Records written before 0.2 kept their counter in a fence key of its own: a claim of
    such a key starts above it (a holder of the old layout can never complete again)."""
    redis_client.set("sp:idem:f:{old}", 41)
    claim = IdempotencyStore(redis_client, "sp").claim("old", "fp")
    assert (claim.status, claim.token) == ("acquired", 42)
