"""Pure tests of the governor's, the store's and the admission's key and input handling.

Nothing here talks to Redis: the client points at a closed port, so a validation that
reached the network would raise GovernorUnavailable instead of ValueError.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import re
import weakref

import pytest
import redis

from sandbox_platform.coordination.admission import Admitter
from sandbox_platform.coordination.governor import (
    MAX_UNITS,
    Decision,
    Governor,
    bucket_units,
    governor_keys,
    resolve_resource,
)
from sandbox_platform.coordination.idempotency import (
    IdempotencyStore,
    fingerprint,
    idempotency_keys,
)
from sandbox_platform.coordination.lua import SCRIPT_NAMES, get_script, load_script

DEAD = "redis://127.0.0.1:1/0"


@pytest.fixture
def governor() -> Governor:
    return Governor(redis.Redis.from_url(DEAD), prefix="unit")


# --- bucket arithmetic --------------------------------------------------------------------


def test_bucket_units_reduce_by_gcd() -> None:
    a, b, cap, per_us = bucket_units(20, 1, 50)
    assert (a, b, per_us) == (1, 50_000, 1_000_000)
    assert cap == 50 * b
    # one token is b units and a units arrive per microsecond: 20 tokens per second
    assert a * 1_000_000 == 20 * b


def test_bucket_units_day_limits_fit_exactly() -> None:
    a, b, cap, _ = bucket_units(1_000_000, 86400, 1_000_000)
    assert a * 86_400_000_000 == 1_000_000 * b
    assert cap <= MAX_UNITS


def test_bucket_units_fractional_period() -> None:
    a, b, _, per_us = bucket_units(3, 0.5, 3)
    assert per_us == 500_000
    assert a * per_us == 3 * b


def test_bucket_too_fine_grained_is_refused() -> None:
    with pytest.raises(ValueError, match="2\\*\\*53"):
        bucket_units(7, 86400.000001, 10**9)


@pytest.mark.parametrize(
    ("limit", "per_seconds", "capacity", "field"),
    [
        (0, 1, 1, "limit"),
        (-1, 1, 1, "limit"),
        (1.5, 1, 1, "limit"),
        (True, 1, 1, "limit"),
        (1, 0, 1, "per_seconds"),
        (1, -2, 1, "per_seconds"),
        (1, math.inf, 1, "per_seconds"),
        (1, math.nan, 1, "per_seconds"),
        (1, "1", 1, "per_seconds"),
        (1, 1e-9, 1, "per_seconds"),
        (1, 1, 0, "capacity"),
    ],
)
def test_bucket_units_validation(
    limit: object, per_seconds: object, capacity: object, field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        bucket_units(limit, per_seconds, capacity)  # type: ignore[arg-type]


def test_set_limit_validates_before_touching_redis(governor: Governor) -> None:
    with pytest.raises(ValueError, match="limit"):
        governor.set_limit("payment", 0, 1)
    with pytest.raises(ValueError, match="per_seconds"):
        governor.set_limit("payment", 1, 0)
    with pytest.raises(ValueError, match="capacity"):
        governor.set_limit("payment", 1, 1, capacity=0)
    with pytest.raises(ValueError, match="name"):
        governor.set_limit("payment", 1, 1, name=" ")
    with pytest.raises(ValueError, match="resource"):
        governor.set_limit("", 1, 1)


@pytest.mark.parametrize("cost", [0, -1, 1.0, True])
def test_acquire_validates_cost(governor: Governor, cost: object) -> None:
    with pytest.raises(ValueError, match="cost"):
        governor.acquire("payment", cost)  # type: ignore[arg-type]


# --- keys ---------------------------------------------------------------------------------


def test_governor_keys_share_one_hash_tag() -> None:
    keys = governor_keys("sp", "payment")
    assert keys.as_list() == ["sp:gov:{payment}:cfg", "sp:gov:{payment}:state"]
    assert keys.stats == "sp:gov:{payment}:stats"  # counters of 0.1, read only


def test_idempotency_keys_share_one_hash_tag() -> None:
    keys = idempotency_keys("sp", "order-1")
    assert keys.record == "sp:idem:r:{order-1}"
    assert keys.fence == "sp:idem:f:{order-1}"
    with pytest.raises(ValueError, match="non-empty"):
        idempotency_keys("sp", "")


def test_admission_keys_and_args() -> None:
    admitter = Admitter(redis.Redis.from_url(DEAD), prefix="p")
    keys, args = admitter._keys_and_args("k", "fp", [("a", 1), ("b", 2)], 1.5, 10)
    assert keys == [
        "p:idem:r:{k}",
        "p:idem:f:{k}",
        "p:gov:{a}:cfg",
        "p:gov:{a}:state",
        "p:gov:{b}:cfg",
        "p:gov:{b}:state",
    ]
    assert args == ["1", "fp", 1500, 10000, 2, 1, 2, "a", "b"]
    keys, args = admitter._keys_and_args(None, "fp", [("a", 3)], 1, 1)
    assert keys == ["p:gov:{a}:cfg", "p:gov:{a}:state"]
    assert args[0] == "0"
    with pytest.raises(ValueError, match="cost"):
        admitter._keys_and_args(None, "fp", [("a", 0)], 1, 1)
    with pytest.raises(ValueError, match="lease"):
        admitter._keys_and_args("k", "fp", [], 0, 1)


# --- templated resources --------------------------------------------------------------------


def test_resolve_resource_by_keyword_and_position() -> None:
    names = ["user_id", "amount"]
    assert resolve_resource("api:{user_id}", (42, 10), {}, names) == "api:42"
    assert resolve_resource("api:{user_id}", (), {"user_id": 7}, names) == "api:7"
    assert resolve_resource("api:{0}:{amount}", (1, 2), {}, names) == "api:1:2"
    assert resolve_resource("static", (), {}, names) == "static"


def test_resolve_resource_attribute_access() -> None:
    @dataclasses.dataclass
    class User:
        id: int

    assert resolve_resource("api:{user.id}", (User(3),), {}, ["user"]) == "api:3"


def test_resolve_resource_missing_field_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="'user_id'"):
        resolve_resource("api:{user_id}", (), {"other": 1}, ["other"])
    with pytest.raises(ValueError, match="positional argument 2"):
        resolve_resource("api:{2}", (1,), {}, [])
    with pytest.raises(ValueError, match="named fields"):
        resolve_resource("api:{}", (1,), {}, [])
    with pytest.raises(ValueError, match="cannot be filled"):
        resolve_resource("api:{user.nope}", (1,), {}, ["user"])


def test_governor_exposes_resolve_resource() -> None:
    assert Governor.resolve_resource("t:{x}", (), {"x": "y"}, []) == "t:y"


# --- fingerprints, decisions, scripts ------------------------------------------------------


def test_fingerprint_is_canonical() -> None:
    assert fingerprint((1, 2), {"a": 1, "b": 2}) == fingerprint([1, 2], {"b": 2, "a": 1})
    assert fingerprint((1,), {}) != fingerprint((2,), {})
    assert IdempotencyStore.fingerprint((), {}) == fingerprint([], {})
    with pytest.raises(TypeError):
        fingerprint((object(),), {})


def test_decision_is_frozen() -> None:
    decision = Decision(allowed=True, remaining=1.0, wait_seconds=0.0, resource="r")
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.allowed = False  # type: ignore[misc]


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_scripts_have_headers_and_expanded_includes(name: str) -> None:
    source = load_script(name)
    assert source.startswith(f"-- {name}.lua:")
    header = source.split("\n\n", 1)[0]
    assert "KEYS[1]" in header
    assert "ARGV[1]" in header
    assert "Returns" in header
    assert not re.search(r"^--\s*@include", source, re.MULTILINE)
    if "@include _common.lua" in _raw(name):  # the shared snippet, expanded exactly once
        assert source.count("local function sp_fmt") == 1


def _raw(name: str) -> str:
    from importlib import resources

    return resources.files("sandbox_platform.coordination.lua").joinpath(f"{name}.lua").read_text()


def test_scripts_sharing_the_common_snippet() -> None:
    users = [n for n in SCRIPT_NAMES if "@include _common.lua" in _raw(n)]
    assert {"admit", "governor_acquire", "idem_claim"} <= set(users)


def test_unknown_script_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown Lua script"):
        load_script("nope")


def test_scripts_are_registered_once_per_client_and_freed_with_it() -> None:
    client = redis.Redis.from_url(DEAD)
    script = get_script(client, "governor_acquire")
    assert get_script(client, "governor_acquire") is script
    assert get_script(redis.Redis.from_url(DEAD), "governor_acquire") is not script
    ref = weakref.ref(client)
    del client, script
    gc.collect()
    assert ref() is None
