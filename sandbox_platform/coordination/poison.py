"""Poison detection: count redeliveries after lost workers, not after warm shutdowns.

kombu flags every restored message as redelivered, whether its worker was SIGKILLed or
shut down warmly (a deploy) while holding it (prefetched, or waiting for its countdown).
At warm shutdown the worker marks the jobs it hands back (:func:`mark_clean_restores`), and
:func:`count_redelivery` consumes that mark instead of counting, so only lost workers count
towards quarantine.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from sandbox_platform.coordination.lua import get_script

__all__ = [
    "count_redelivery",
    "held_task_ids",
    "mark_clean_restores",
    "poison_keys",
    "uncount_redelivery",
]

MARK_TTL_SECONDS = 24 * 3600


def poison_keys(prefix: str, task_id: str) -> tuple[str, str]:
    base = f"{prefix}:poison:{{{task_id}}}"
    return f"{base}:clean", f"{base}:count"


def count_redelivery(client: redis.Redis, prefix: str, task_id: str) -> int:
    """One round trip: 0 for a warm-shutdown restore, else the redeliveries so far."""
    return int(
        get_script(client, "poison_count")(
            keys=poison_keys(prefix, task_id), args=[MARK_TTL_SECONDS]
        )
    )


def uncount_redelivery(client: redis.Redis, prefix: str, task_id: str) -> None:
    """Take back one counted redelivery (it was not caused by a lost worker)."""
    client.decr(poison_keys(prefix, task_id)[1])


def mark_clean_restores(client: redis.Redis, prefix: str, task_ids: Iterable[str]) -> int:
    """Mark jobs this worker hands back at warm shutdown; return how many were marked."""
    pipe = client.pipeline(transaction=False)
    count = 0
    for task_id in task_ids:
        pipe.set(poison_keys(prefix, task_id)[0], "1", ex=MARK_TTL_SECONDS)
        count += 1
    if count:
        pipe.execute()
    return count


def held_task_ids() -> list[str]:
    """Ids of the jobs this worker holds but is not running (prefetched or waiting on an ETA)."""
    from celery.worker import state

    active = {request.id for request in list(state.active_requests)}
    scheduled = getattr(state, "scheduled_requests", ())  # ETA-held (Celery >= 5.5)
    held = list(scheduled) + list(state.reserved_requests)
    return sorted({request.id for request in held if request.id not in active})
