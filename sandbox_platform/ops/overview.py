"""Views of the live system for people: the heartbeat over the last hour, the governor's
buckets, the queues and job outcomes over time. Pure reads; JSON-ready dicts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from sandbox_platform.coordination.governor import Governor
from sandbox_platform.core.settings import Settings
from sandbox_platform.ops.backlog import QueueSource, queue_stats
from sandbox_platform.ops.heartbeat import Heartbeat
from sandbox_platform.ops.leader import LeaderLease
from sandbox_platform.ops.metrics import JOBS, parse_field, read_minutes
from sandbox_platform.ops.records import heartbeat_ticks

__all__ = [
    "by_minute",
    "governor_overview",
    "heartbeat_overview",
    "outcomes_over_time",
    "queues_overview",
    "timeline",
]

TIMELINE_SECONDS = 3600


def timeline(
    tick_times: Iterable[float], interval: float, now: float, span: float = TIMELINE_SECONDS
) -> list[dict[str, Any]]:
    """One entry per heartbeat slot of the last ``span`` seconds, by state: ``ok`` (a tick was
    recorded), ``missed`` (none, after the first tick of the window), ``before`` (no tick
    yet in the window) or ``pending`` (the current slot, still open)."""
    slots = max(1, min(int(span / interval), 2000))
    last = math.floor(now / interval)
    seen = {math.floor(t / interval) for t in tick_times}
    first = min(seen, default=last + 1)
    entries = []
    for slot in range(last - slots + 1, last + 1):
        state = "missed"
        if slot in seen:
            state = "ok"
        elif slot == last:
            state = "pending"
        elif slot < first:
            state = "before"
        entries.append({"slot_start": slot * interval, "state": state})
    return entries


def by_minute(slots: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The timeline folded into minutes: ticks, missed slots and open/no-data slots each."""
    minutes: dict[int, dict[str, Any]] = {}
    for slot in slots:
        start = int(slot["slot_start"] // 60) * 60
        entry = minutes.setdefault(start, {"minute_start": start, "ok": 0, "missed": 0, "other": 0})
        key = slot["state"] if slot["state"] in ("ok", "missed") else "other"
        entry[key] += 1
    return [minutes[start] for start in sorted(minutes)]


def heartbeat_overview(settings: Settings, client: redis.Redis) -> dict[str, Any]:
    """Beat ticks over the last hour (missed slots visible), the lease holder, the workers."""
    heartbeat = Heartbeat(
        client, interval_seconds=settings.heartbeat_interval, prefix=settings.key_prefix
    )
    status = heartbeat.status()
    now = heartbeat.redis_time()
    since = datetime.fromtimestamp(now, UTC) - timedelta(seconds=TIMELINE_SECONDS)
    ticks = heartbeat_ticks(settings.active_database_url, since)
    lease = LeaderLease(
        client, "beat", ttl_seconds=1.5 * settings.heartbeat_interval, prefix=settings.key_prefix
    )
    holder = lease.holder_info()
    slots = timeline([tick["redis_time"] for tick in ticks], settings.heartbeat_interval, now)
    return {
        "interval": settings.heartbeat_interval,
        "last_tick_age": status["last_tick_age"],
        "healthy": status["healthy"],
        "ticks_total": status["ticks"],
        "leader": None if holder is None else vars(holder),
        "workers": [
            {"name": name, "last_seen_seconds": round(age, 1)}
            for name, age in sorted(status["workers"].items())
        ],
        "timeline": slots,
        "minutes": by_minute(slots),
        "missed": sum(1 for slot in slots if slot["state"] == "missed"),
    }


def _per_minute(
    minutes: Sequence[tuple[int, dict[str, float]]], name: str, label: str
) -> dict[str, list[float]]:
    series: dict[str, list[float]] = {}
    for index, (_minute, counters) in enumerate(minutes):
        for key, value in counters.items():
            metric, labels = parse_field(key)
            if metric == name:
                row = series.setdefault(labels.get(label, ""), [0.0] * len(minutes))
                row[index] += value
    return series


def governor_overview(client: redis.Redis, prefix: str) -> list[dict[str, Any]]:
    """Every resource with a limit: its limits with the tokens in each now, the admitted and
    denied counts since the start, and per minute (``[last minute, this minute]``)."""
    governor = Governor(client, prefix)
    minutes = read_minutes(client, prefix, minutes=2)
    admitted = _per_minute(minutes, "governor_admitted_total", "resource")
    denied = _per_minute(minutes, "governor_denied_total", "resource")
    out = []
    for resource, stats in governor.stats().items():
        tokens = governor.tokens(resource)
        out.append(
            {
                "resource": resource,
                "limits": [
                    {**limit, "tokens": round(tokens.get(limit["name"], 0.0), 3)}
                    for limit in stats["limits"]
                ],
                "admitted": stats["admitted"],
                "denied": stats["denials"],
                "admitted_per_minute": [int(v) for v in admitted.get(resource, [0.0, 0.0])],
                "denied_per_minute": [int(v) for v in denied.get(resource, [0.0, 0.0])],
            }
        )
    return out


def outcomes_over_time(client: redis.Redis, prefix: str, minutes: int = 30) -> dict[str, Any]:
    """Job outcomes per task and state for each of the last ``minutes`` minutes."""
    window = read_minutes(client, prefix, minutes=minutes)
    per_task: dict[str, dict[str, list[float]]] = {}
    for index, (_minute, counters) in enumerate(window):
        for key, value in counters.items():
            metric, labels = parse_field(key)
            if metric != JOBS:
                continue
            states = per_task.setdefault(labels.get("task", ""), {})
            states.setdefault(labels.get("state", ""), [0.0] * len(window))[index] += value
    return {
        "minutes": [datetime.fromtimestamp(m * 60, UTC).isoformat() for m, _ in window],
        "tasks": {
            task: {state: [int(v) for v in values] for state, values in sorted(states.items())}
            for task, states in sorted(per_task.items())
        },
    }


def queues_overview(broker: QueueSource, queues: Iterable[str]) -> list[dict[str, Any]]:
    """Length and oldest job's age of every queue."""
    return [vars(queue_stats(broker, queue)) for queue in sorted(set(queues))]
