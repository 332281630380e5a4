"""A governor resource used with no limit: one warning and one warning alert per process."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from sqlalchemy import select

from sandbox_platform.coordination.governor import Governor
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import Alert
from sandbox_platform.ops.unlimited_resources import KIND
from tests.helpers import json_lines, wait_until

pytestmark = pytest.mark.slow


def _alerts(database_url: str) -> list[Alert]:
    with session_scope(database_url) as session:
        return list(session.scalars(select(Alert).where(Alert.kind == KIND)))


def test_first_unlimited_use_warns_once(
    worker_factory: Any,
    platform_app: Any,
    guarded: Any,
    redis_client: redis.Redis,
    platform_settings_kwargs: dict[str, object],
) -> None:
    worker = worker_factory(platform_app, "tests.worker_app")
    for i in range(3):
        guarded.limited.delay("unlimited-runs", i)
    wait_until(lambda: redis_client.llen("unlimited-runs") == 3, timeout=60, message="not run")
    database_url = str(platform_settings_kwargs["database_url"])
    alerts = wait_until(lambda: _alerts(database_url), timeout=30, message="no alert stored")
    assert len(alerts) == 1
    assert alerts[0].severity == "warning"
    assert alerts[0].context["resource"] == "test-bucket"
    warnings = [
        r
        for r in json_lines(worker.log_text())
        if r.get("level") == "warning" and "has no limit configured" in str(r.get("event"))
    ]
    assert len(warnings) == 1, warnings


def test_a_limited_resource_raises_nothing(
    worker_factory: Any,
    platform_app: Any,
    guarded: Any,
    redis_client: redis.Redis,
    platform_settings_kwargs: dict[str, object],
) -> None:
    Governor(redis_client, "sp").set_limit("test-bucket", 1000, 1.0)
    worker = worker_factory(platform_app, "tests.worker_app")
    guarded.limited.delay("limited-runs", 1)
    wait_until(lambda: redis_client.llen("limited-runs") == 1, timeout=60, message="not run")
    assert _alerts(str(platform_settings_kwargs["database_url"])) == []
    assert "has no limit configured" not in worker.log_text()
