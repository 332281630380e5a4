"""Admission (claim + take in one script) against a real Redis."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import redis

from sandbox_platform.coordination.admission import Admitter
from sandbox_platform.coordination.governor import Governor
from sandbox_platform.coordination.idempotency import IdempotencyStore, fingerprint
from sandbox_platform.core.errors import GovernorUnavailable

FP = fingerprint(("order-1",), {})


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def admitter(redis_client: redis.Redis, prefix: str) -> Admitter:
    return Admitter(redis_client, prefix)


@pytest.fixture
def gov(redis_client: redis.Redis, prefix: str) -> Governor:
    return Governor(redis_client, prefix)


@pytest.fixture
def store(redis_client: redis.Redis, prefix: str) -> IdempotencyStore:
    return IdempotencyStore(redis_client, prefix)


def redis_seconds(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


def test_claim_and_take_in_one_call(
    admitter: Admitter, gov: Governor, store: IdempotencyStore
) -> None:
    gov.set_limit("pay", 5, 86400)
    admission = admitter.admit("k", FP, [("pay", 2)])
    assert admission.status == "acquired"
    assert admission.admitted
    assert admission.token == 1
    assert store.claim("k", FP).status == "in_flight"
    assert 1.99 < gov.acquire("pay").remaining < 2.01  # 5 - 2 admitted - 1 = 2
    assert gov.stats()["pay"]["admitted"] == 2


def test_denied_leaves_no_claim(admitter: Admitter, gov: Governor, store: IdempotencyStore) -> None:
    gov.set_limit("pay", 1, 86400)
    assert gov.acquire("pay").allowed
    denied = admitter.admit("k", FP, [("pay", 1)])
    assert denied.status == "denied"
    assert denied.resource == "pay"
    assert denied.token is None
    assert 0 < denied.wait_seconds <= 86400
    assert gov.denials("pay") == 1
    assert store.count() == 0
    assert store.claim("k", FP).status == "acquired"


def test_done_and_in_flight_take_no_token(
    admitter: Admitter, gov: Governor, store: IdempotencyStore
) -> None:
    gov.set_limit("pay", 5, 86400)
    first = admitter.admit("k", FP, [("pay", 1)])
    in_flight = admitter.admit("k", FP, [("pay", 1)])
    assert in_flight.status == "in_flight"
    assert in_flight.token == first.token
    assert 299 < in_flight.wait_seconds <= 300
    assert first.token is not None
    assert store.complete("k", first.token, json.dumps({"charged": 1}))
    done = admitter.admit("k", FP, [("pay", 1)])
    assert done.status == "done"
    assert done.value() == {"charged": 1}
    conflict = admitter.admit("k", fingerprint(("other",), {}), [("pay", 1)])
    assert conflict.status == "conflict"
    assert gov.stats()["pay"] == {
        "limits": [{"name": "per_86400s", "limit": 5, "per_seconds": 86400.0, "capacity": 5}],
        "denials": 0,
        "admitted": 1,
    }


def test_several_resources_all_or_nothing(admitter: Admitter, gov: Governor) -> None:
    gov.set_limit("a", 5, 86400)
    gov.set_limit("b", 1, 86400)
    gov.set_limit("c", 1, 86400)
    assert gov.acquire("b").allowed
    denied = admitter.admit(None, FP, [("a", 1), ("b", 1), ("c", 1)])
    assert denied.status == "denied"
    assert denied.resource == "b"
    assert gov.stats()["a"]["admitted"] == 0
    assert gov.stats()["c"]["admitted"] == 0
    assert 3.99 < gov.acquire("a").remaining < 4.01  # 'a' gave nothing to the denied admission
    assert gov.acquire("c").allowed


def test_no_key_and_unlimited_resources(admitter: Admitter) -> None:
    admission = admitter.admit(None, FP, [("free", 3)])
    assert admission.status == "acquired"
    assert admission.token is None
    assert admitter.admit(None, FP, []).status == "acquired"


def test_expired_lease_is_reclaimed_through_admission(
    admitter: Admitter, store: IdempotencyStore
) -> None:
    crashed = admitter.admit("k", FP, [], lease=0.05)
    assert crashed.token is not None
    lease_end = redis_seconds(store.client) + 0.1
    deadline = time.monotonic() + 5
    while redis_seconds(store.client) < lease_end:
        assert time.monotonic() < deadline, "Redis time did not pass the lease"
        time.sleep(0.01)
    again = admitter.admit("k", FP, [])
    assert again.status == "acquired"
    assert again.token is not None
    assert again.token > crashed.token
    assert not store.complete("k", crashed.token, "1")


def test_unreachable_redis_fails_closed() -> None:
    dead = Admitter(redis.Redis.from_url("redis://127.0.0.1:1/0"))
    with pytest.raises(GovernorUnavailable):
        dead.admit("k", FP, [("pay", 1)])
