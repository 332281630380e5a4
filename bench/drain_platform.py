"""The platform app for bench_drain.py: ``celery -A bench.drain_platform:platform_app worker``.

Built with :func:`sandbox_platform.app.factory.create_app` from settings given by environment
variables (``SP_DRAIN_REDIS_URL``, ``SP_DRAIN_DATABASE_URL``, ``SP_DRAIN_KEY_PREFIX``). Three
tasks with the same body (one INCR): a plain Celery task on the platform app, a guarded task
behind the governor, and the same guarded task with an idempotency key per job; and a guarded
latency task (it records how long after its enqueue it started). ``platform_split_app`` is the
guarded task again with the coordination keys in the next Redis database (no admission with
the fetch: the fallback path). ``drain_io`` is the I/O-bound phase's guarded task (governor and
idempotency key; its body waits 100 ms, then the INCR); ``drain_async`` is the async phase's:
the same guards on an ``async def`` body (``await asyncio.sleep(0.1)``, then the INCR on a
``redis.asyncio`` client), which the platform runs on its worker process's event loop.
"""

from __future__ import annotations

import os

from bench.drain_common import (
    ENV_DB,
    ENV_PREFIX,
    incr,
    record_latency,
    redis_url,
    wait_then_incr,
    wait_then_incr_async,
)
from sandbox_platform.app.factory import create_app
from sandbox_platform.core.settings import load_settings
from sandbox_platform.tasks import guarded_task

__all__ = [
    "GOVERNOR_RESOURCE",
    "drain_async",
    "drain_guarded",
    "drain_idem",
    "drain_io",
    "drain_latency",
    "drain_plain",
    "drain_secret",
    "drain_split",
    "platform_app",
    "platform_split_app",
    "split_url",
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


@guarded_task(platform_app, name="drain.secret", governor=[GOVERNOR_RESOURCE], secret=["i"])
def drain_secret(i: int) -> None:
    """The guarded task with one secret argument (sealed at enqueue, opened in the worker)."""
    incr()


@guarded_task(platform_app, name="drain.io", governor=[GOVERNOR_RESOURCE], idempotency_key="{i}")
def drain_io(i: int) -> None:
    """The I/O-bound phase: the guarded task with governor and idempotency key."""
    wait_then_incr()


@guarded_task(platform_app, name="drain.async", governor=[GOVERNOR_RESOURCE], idempotency_key="{i}")
async def drain_async(i: int) -> None:
    """The async phase: the I/O task's guards on an ``async def`` body."""
    await wait_then_incr_async()


def split_url() -> str:
    """The coordination Redis of the split app: the broker's server, the next database."""
    base, _, db = redis_url().rpartition("/")
    return f"{base}/{int(db) + 1}"


#: the same platform with its coordination keys in another Redis database than the broker's:
#: the transport cannot admit with the fetch, so the pipeline admits with its own round trip
platform_split_app = create_app(
    load_settings(
        redis_url=split_url(),
        broker_url=redis_url(),
        database_url=os.environ[ENV_DB],
        key_prefix=os.environ.get(ENV_PREFIX, "spdrain"),
    ),
    main="drain_platform_split",
)


@guarded_task(platform_split_app, name="drain.guarded", governor=[GOVERNOR_RESOURCE])
def drain_split(i: int) -> None:
    incr()


@guarded_task(platform_app, name="drain.latency", governor=[GOVERNOR_RESOURCE])
def drain_latency(sent_at: float) -> None:
    record_latency(sent_at)
