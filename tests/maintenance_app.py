"""``celery -A tests.maintenance_app worker``: a platform app with an extra guard, built
from the environment, and two tasks that write to a Redis list."""

from __future__ import annotations

import redis

from sandbox_platform import create_app, guarded_task
from sandbox_platform.core.apps import active_settings
from sandbox_platform.core.exits import exit_on_settings_error
from tests.maintenance_guard import MaintenanceWindow

app = exit_on_settings_error(lambda: create_app(guards=[MaintenanceWindow()]))


def _redis() -> redis.Redis:
    url = active_settings().redis_url
    assert url is not None
    return redis.Redis.from_url(url)


@guarded_task(app, name="maint.work")
def work(n: int) -> int:
    _redis().rpush("maint:done", n)
    return n


@guarded_task(app, name="maint.urgent", maintenance_exempt=True)
def urgent(n: int) -> int:
    _redis().rpush("maint:urgent", n)
    return n


__all__ = ["app", "urgent", "work"]
