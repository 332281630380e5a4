"""Multi-key scripts on a Redis Cluster: one call per hash slot.

A script over the records of several idempotency keys (``enq_dedupe.lua``, ``enq_forget.lua``)
is one call on a single Redis; on a cluster each call may only touch one slot, so the keys are
grouped by slot (:func:`slot_groups`) and each group is its own call. The whole is then no
longer atomic: :func:`dedupe_by_slot` undoes what earlier groups marked when a later one finds
a conflict (``enq_forget.lua``, the same undo as after a failed publish).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.crc import key_slot

from sandbox_platform.coordination.lua import get_script
from sandbox_platform.core.redis_client import text

__all__ = ["dedupe_by_slot", "forget_by_slot", "slot_groups"]


def slot_groups(keys: Sequence[str]) -> list[list[int]]:
    """The indexes of ``keys`` grouped by cluster slot, groups in order of first appearance."""
    groups: dict[int, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key_slot(key.encode()), []).append(index)
    return list(groups.values())


def dedupe_by_slot(
    client: redis.Redis, keys: Sequence[str], args: Sequence[str | int]
) -> list[Any]:
    """``enq_dedupe.lua`` over ``keys`` (two ``args`` per key), one call per slot; the reply
    is the script's (``["ok", v1, ...]`` or ``["conflict", i]``) for the whole list."""
    script = get_script(client, "enq_dedupe")
    held: list[Any] = [""] * len(keys)
    marked: list[tuple[str, str]] = []
    for group in slot_groups(keys):
        group_args = [arg for i in group for arg in args[2 * i : 2 * i + 2]]
        reply = script(keys=[keys[i] for i in group], args=group_args)
        if text(reply[0]) == "conflict":
            if marked:
                forget_by_slot(client, [k for k, _ in marked], [v for _, v in marked])
            return ["conflict", group[int(reply[1]) - 1] + 1]
        for i, value in zip(group, reply[1:], strict=True):
            held[i] = value
            if not text(value).partition(" ")[0]:
                marked.append((keys[i], str(args[2 * i])))
    return ["ok", *held]


def forget_by_slot(client: redis.Redis, keys: Sequence[str], values: Sequence[str]) -> int:
    """``enq_forget.lua`` over ``keys`` (one value each), one call per slot."""
    script = get_script(client, "enq_forget")
    return sum(
        int(script(keys=[keys[i] for i in group], args=[values[i] for i in group]))
        for group in slot_groups(keys)
    )
