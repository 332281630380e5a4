"""The platform app for bench_drain.py: ``celery -A bench.drain_platform:platform_app worker``.

Built with :func:`sandbox_platform.app.factory.create_app` from settings given by environment
variables (``SP_DRAIN_REDIS_URL``, ``SP_DRAIN_DATABASE_URL``, ``SP_DRAIN_KEY_PREFIX``). Three
tasks with the same body (one INCR): a plain Celery task on the platform app, a guarded task
behind the governor, and the same guarded task with an idempotency key per job; and a guarded
latency task (it records how long after its enqueue it started).
"""

from __future__ import annotations

import os

from bench.drain_common import ENV_DB, ENV_PREFIX, incr, record_latency, redis_url
from sandbox_platform.app.factory import create_app
from sandbox_platform.core.settings import load_settings
from sandbox_platform.tasks import guarded_task

__all__ = [
    "GOVERNOR_RESOURCE",
    "drain_guarded",
    "drain_idem",
    "drain_latency",
    "drain_plain",
    "platform_app",
]

GOVERNOR_RESOURCE = "bench"

platform_app = create_app(
    load_settings(
        redis_url=redis_url(),
        database_url=os.environ[ENV_DB],
        key_prefix=os.environ.get(ENV_PREFIX, "spdrain"),
    ),
    main="drain_platform",
)


@platform_app.task(name="drain.plain", shared=False)
def drain_plain(i: int) -> None:
    incr()


@guarded_task(platform_app, name="drain.guarded", governor=[GOVERNOR_RESOURCE])
def drain_guarded(i: int) -> None:
    incr()


@guarded_task(platform_app, name="drain.idem", governor=[GOVERNOR_RESOURCE], idempotency_key="{i}")
def drain_idem(i: int) -> None:
    incr()


@guarded_task(platform_app, name="drain.latency", governor=[GOVERNOR_RESOURCE])
def drain_latency(sent_at: float) -> None:
    record_latency(sent_at)
