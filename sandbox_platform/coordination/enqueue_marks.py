"""The enqueue-side marks of idempotency keys: which job was published first under a key.

A key's mark is the ``tid`` field of its record (``{prefix}:idem:r:{key}``, see
``lua/_claim.lua``): ``"<task id> <fingerprint of the arguments>"``. A bulk enqueue marks all
its keys in one round trip (``enq_dedupe.lua``); a publish that failed takes its marks back
(``enq_forget.lua``). On a Redis Cluster the keys of one call may live in several slots: the
call is made once per slot (:mod:`~sandbox_platform.coordination.slots`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from sandbox_platform.coordination.idempotency import idempotency_keys
from sandbox_platform.coordination.lua import get_script
from sandbox_platform.coordination.slots import dedupe_by_slot, forget_by_slot
from sandbox_platform.core.redis_client import is_cluster

__all__ = ["enqueue_key", "forget_marks", "mark_first_jobs"]


def enqueue_key(prefix: str, key: str) -> str:
    """The Redis key that remembers the first job published under idempotency ``key``: the
    key's record (its ``tid`` field)."""
    return idempotency_keys(prefix, key).record


def mark_first_jobs(client: redis.Redis, keys: Sequence[str], args: Sequence[str | int]) -> Any:
    """Mark each of ``keys`` (record keys) for its job unless marked before; ``args`` are the
    pairs ``"<task id> <fingerprint>", ttl``. The reply of ``enq_dedupe.lua``: ``["ok",
    held...]`` (what each record held, "" where this call marked it) or ``["conflict",
    index]``. Redis errors propagate."""
    if is_cluster(client):
        return dedupe_by_slot(client, list(keys), list(args))
    return get_script(client, "enq_dedupe")(keys=list(keys), args=list(args))


def forget_marks(client: redis.Redis, keys: Sequence[str], values: Sequence[str]) -> None:
    """Take back the marks this process wrote (each ``keys[i]`` only while it still holds
    ``values[i]``): their publish failed, so a re-submission must publish again."""
    if is_cluster(client):
        forget_by_slot(client, keys, values)
    else:
        get_script(client, "enq_forget")(keys=list(keys), args=list(values))
