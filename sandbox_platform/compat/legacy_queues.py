"""Draining the queues of 0.1: jobs waiting on an unqualified queue are not stranded.

0.1 published every job to ``sandbox_platform`` (and a task's own ``queue=`` name) whatever
its mode; this version consumes mode-qualified queues only (:mod:`sandbox_platform.broker.queues`).
:func:`migrate_legacy_queue` moves what waits on an old queue to the qualified queue of each
message's own mode (its ``sp_mode`` header; ``default_mode`` for a message without one), in
batches of atomic Lua calls, oldest first. Run it (``sandbox-platform queues migrate``) once the
0.1 publishers and workers are stopped and their unacknowledged jobs have come back (after the
visibility timeout); running it again is harmless.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import redis

from sandbox_platform.broker.queues import MODES, base_name, qualify
from sandbox_platform.compat.lua import get_script

__all__ = ["Migration", "migrate_legacy_queue", "migrate_legacy_queues"]

# kombu's Redis transport keeps priorities 3, 6 and 9 in lists named queue + sep + step.
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)


@dataclass(frozen=True)
class Migration:
    queue: str
    sandbox: int
    live: int


#: the list suffixes of one queue: its own list and kombu's priority lists
_SUFFIXES = ("", *(f"{_PRIORITY_SEP}{step}" for step in _PRIORITY_STEPS))


def migrate_legacy_queue(
    broker: redis.Redis, queue: str, default_mode: str, batch: int = 500
) -> Migration:
    """Move every message of unqualified ``queue`` to its mode's qualified queue."""
    if default_mode not in MODES:
        raise ValueError(f"unknown mode {default_mode!r}")
    name = base_name(queue)
    script = get_script(broker, "migrate_queue")
    moved = {"sandbox": 0, "live": 0}
    for suffix in _SUFFIXES:
        keys = [f"{name}{suffix}", *(f"{qualify(name, mode)}{suffix}" for mode in MODES)]
        while True:
            sandbox, live, left = script(keys=keys, args=[default_mode, batch])
            moved["sandbox"] += int(sandbox)
            moved["live"] += int(live)
            if int(left) == 0:
                break
    return Migration(name, moved["sandbox"], moved["live"])


def migrate_legacy_queues(
    broker: redis.Redis, queues: Iterable[str], default_mode: str
) -> list[Migration]:
    return [migrate_legacy_queue(broker, queue, default_mode) for queue in sorted(set(queues))]
