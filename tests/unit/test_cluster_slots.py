"""Every coordination script's keys share one Redis Cluster hash slot (pure unit tests).

On a cluster a script (and a MULTI) may touch one slot only. The keys each script is called
with come from the platform's key functions; here they are built for several names and their
slots compared. The scripts that span keys of different names (``admit``, ``enq_dedupe``,
``enq_forget``) are run differently on a cluster (coordination/admission.py,
coordination/slots.py): that they do span slots is asserted too, so the special handling is
not dead code.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis.crc import key_slot

from sandbox_platform.coordination.governor import governor_keys
from sandbox_platform.coordination.idempotency import idempotency_keys
from sandbox_platform.coordination.lua import SCRIPT_NAMES
from sandbox_platform.coordination.poison import poison_keys
from sandbox_platform.coordination.slots import slot_groups
from sandbox_platform.ops.alerts._throttle import Throttle
from sandbox_platform.ops.heartbeat import heartbeat_key
from sandbox_platform.ops.leader import lease_keys

NAMES = ["order-42", "payments", "a:b:c", "x{y", "ü-ñ", "42", "tenant:7:api", "k" * 200]
PREFIXES = ["sp", "myapp:prod"]


def _slot(key: str) -> int:
    return key_slot(key.encode())


def _idem(prefix: str, name: str) -> list[str]:
    keys = idempotency_keys(prefix, name)
    return [keys.record, keys.fence]


def _gov(prefix: str, name: str) -> list[str]:
    return governor_keys(prefix, name).as_list()


def _beat(prefix: str, name: str) -> list[str]:
    return [heartbeat_key(prefix, "tick", name), heartbeat_key(prefix, "last"),
            heartbeat_key(prefix, "ticks"), heartbeat_key(prefix, "worker", name),
            heartbeat_key(prefix, "workers"), heartbeat_key(prefix, "watchdog", "state"),
            heartbeat_key(prefix, "watchdog", "since")]  # fmt: skip


#: the single-slot scripts of coordination/lua: the keys one call passes, for a name
GUARD_SCRIPT_KEYS: dict[str, Callable[[str, str], list[str]]] = {
    "governor_acquire": _gov,
    "governor_clear": _gov,
    "governor_peek": _gov,
    "idem_claim": _idem,
    "idem_complete": _idem,
    "idem_extend": _idem,
    "idem_release": lambda p, n: _idem(p, n)[:1],
    "poison_count": lambda p, n: list(poison_keys(p, n)),
}
#: the guards' scripts whose keys belong to several names; on a cluster they run in steps
MULTI_NAME_SCRIPTS = {"admit", "enq_dedupe", "enq_forget"}

#: the other coordination scripts and MULTIs (heartbeat, watchdog, leader lease, throttle,
#: set_limit's MULTI on a resource's two hashes)
OTHER_KEYS: dict[str, Callable[[str, str], list[str]]] = {
    "heartbeat and watchdog": _beat,
    "leader lease": lambda p, n: list(lease_keys(n, p)),
    "alert throttle": lambda p, n: list(Throttle(None, 60, p).keys("task_failed", n)),
    "governor set_limit MULTI": _gov,
}


def test_every_guard_script_is_classified() -> None:
    assert set(GUARD_SCRIPT_KEYS) | MULTI_NAME_SCRIPTS == set(SCRIPT_NAMES)


@pytest.mark.parametrize("what", sorted({**GUARD_SCRIPT_KEYS, **OTHER_KEYS}))
@pytest.mark.parametrize("prefix", PREFIXES)
def test_keys_of_one_call_share_a_slot(what: str, prefix: str) -> None:
    build = {**GUARD_SCRIPT_KEYS, **OTHER_KEYS}[what]
    for name in NAMES:
        keys = build(prefix, name)
        assert len({_slot(k) for k in keys}) == 1, (what, keys)


def test_names_spread_over_slots() -> None:
    """Each idempotency key and each resource has a tag of its own: the load spreads."""
    assert len({_slot(_idem("sp", f"order-{i}")[0]) for i in range(50)}) > 40
    assert len({_slot(_gov("sp", f"api-{i}")[0]) for i in range(50)}) > 40


def test_admission_of_a_key_and_a_resource_spans_slots() -> None:
    """Why admit.lua is not run on a cluster: its keys have two tags."""
    keys = _idem("sp", "order-42") + _gov("sp", "payments")
    assert len({_slot(k) for k in keys}) == 2


def test_slot_groups_keep_order_and_group_by_slot() -> None:
    keys = [_idem("sp", n)[0] for n in ["a", "b", "a", "c", "b"]]
    groups = slot_groups(keys)
    assert sorted(i for g in groups for i in g) == list(range(5))
    assert [0, 2] in groups and [1, 4] in groups and [3] in groups
    assert groups[0][0] == 0  # groups in order of first appearance
    for group in groups:
        assert len({_slot(keys[i]) for i in group}) == 1
