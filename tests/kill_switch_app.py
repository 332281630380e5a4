"""``celery -A tests.kill_switch_app worker``: a platform app with the kill-switch guard and
an idempotent, governed task that writes to a Redis list."""

from __future__ import annotations

import redis

from sandbox_platform import create_app, guarded_task
from sandbox_platform.core.apps import active_settings
from sandbox_platform.core.exits import exit_on_settings_error
from tests.kill_switch_guard import KillSwitch

app = exit_on_settings_error(lambda: create_app(guards=[KillSwitch()]))


@guarded_task(app, name="switch.pay", idempotency_key="{n}", governor=["switch-api"])
def pay(n: int) -> int:
    url = active_settings().redis_url
    assert url is not None
    redis.Redis.from_url(url).rpush("switch:paid", n)
    return n


__all__ = ["app", "pay"]
