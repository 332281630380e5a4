"""A minimal Celery app for the real-beat failover test (``celery -A tests.beat_app_for_tests``).

Configured from the environment of the process that starts it (the test):
  SP_BEAT_TEST_REDIS_URL     broker and coordination Redis (required)
  SP_BEAT_TEST_DATABASE_URL  database for HeartbeatTick rows (optional)
  SP_BEAT_TEST_INTERVAL      heartbeat interval in seconds (default 1)
  SP_BEAT_TEST_QUEUE         queue name (default beat-test)

The heartbeat task appends every delivery to ``beattest:deliveries`` (duplicates included)
and the tick ids it recorded first to ``beattest:recorded``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from celery import Celery, Task

from sandbox_platform.core.redis_client import get_redis
from sandbox_platform.ops.heartbeat import Heartbeat

DELIVERIES = "beattest:deliveries"
RECORDED = "beattest:recorded"
TASK_NAME = "beat_test.heartbeat"


def make_app() -> Celery:
    url = os.environ["SP_BEAT_TEST_REDIS_URL"]
    interval = float(os.environ.get("SP_BEAT_TEST_INTERVAL", "1"))
    queue = os.environ.get("SP_BEAT_TEST_QUEUE", "beat-test")
    app = Celery("beat_app_for_tests", set_as_current=False)
    app.conf.update(
        broker_url=url,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_default_queue=queue,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        beat_schedule={
            "heartbeat": {
                "task": TASK_NAME,
                "schedule": interval,
                "kwargs": {"tick_id": None},  # opt in: the scheduler fills the tick id in
                "options": {"expires": 30},
            }
        },
        sandbox_platform_redis_url=url,
        sandbox_platform_key_prefix="sp",
        sandbox_platform_leader_ttl=1.5 * interval,
        sp_test_interval=interval,
        sp_test_database_url=os.environ.get("SP_BEAT_TEST_DATABASE_URL") or None,
    )

    @app.task(name=TASK_NAME, bind=True)
    def heartbeat(self: Task[Any, Any], tick_id: str | None = None) -> bool:
        client = get_redis(url)
        request = self.request
        client.rpush(
            DELIVERIES,
            json.dumps(
                {
                    "kwarg": tick_id,
                    "header": getattr(request, "tick_id", None),
                    "token": getattr(request, "sp_fencing_token", None),
                }
            ),
        )
        if tick_id is None:
            return False
        hb = Heartbeat(
            client,
            interval_seconds=app.conf.sp_test_interval,
            database_url=app.conf.sp_test_database_url,
        )
        recorded = hb.record_tick(tick_id, worker=request.hostname)
        if recorded:
            client.rpush(RECORDED, tick_id)
        return recorded

    return app


_app: Celery | None = None


def __getattr__(name: str) -> Any:
    """``app`` is built on first access (``celery -A`` asks for it), not at import."""
    global _app
    if name == "app":
        if _app is None:
            _app = make_app()
        return _app
    raise AttributeError(name)
