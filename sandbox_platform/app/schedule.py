"""The platform's beat schedule: the heartbeat and the queue watch every interval,
housekeeping hourly. The LeaderScheduler adds it to the ``beat_schedule`` of every platform
app (one built by ``create_app``), so a user's app runs it beside its own entries.

Each entry opts in to a ``tick_id`` keyword argument, which the LeaderScheduler fills with
``"<entry>:<slot start>"``; whichever beat sends a slot, the tick runs once.
"""

from __future__ import annotations

from typing import Any

from sandbox_platform.app.builtin_tasks import HEARTBEAT_TASK, HOUSEKEEPING_TASK, QUEUE_WATCH_TASK
from sandbox_platform.core.settings import Settings

__all__ = ["HOUSEKEEPING_SECONDS", "beat_schedule", "with_platform_schedule"]

HOUSEKEEPING_SECONDS = 3600.0


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    interval = settings.heartbeat_interval
    return {
        "sandbox-platform-heartbeat": {
            "task": HEARTBEAT_TASK,
            "schedule": interval,
            "kwargs": {"tick_id": None},
            "options": {"expires": max(2 * interval, 1.0)},
        },
        "sandbox-platform-queue-watch": {
            "task": QUEUE_WATCH_TASK,
            "schedule": interval,
            "kwargs": {"tick_id": None},
            "options": {"expires": max(2 * interval, 1.0)},
        },
        "sandbox-platform-housekeeping": {
            "task": HOUSEKEEPING_TASK,
            "schedule": HOUSEKEEPING_SECONDS,
            "kwargs": {"tick_id": None},
            "options": {"expires": HOUSEKEEPING_SECONDS},
        },
    }


def with_platform_schedule(
    user: dict[str, dict[str, Any]] | None, settings: Settings
) -> dict[str, dict[str, Any]]:
    """The platform's entries and the user's (a user entry of the same name wins)."""
    return {**beat_schedule(settings), **(user or {})}
