"""Every way to enqueue, from a process holding a sandbox app and a live app: each message
carries its own app's mode and reaches its own mode's queue (the job's app decides, never
the last app created). Read straight from the broker's lists: no worker needed."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from celery import chain, group

from sandbox_platform import create_app, enqueue, enqueue_many, enqueue_many_async
from sandbox_platform.core.context import MODE_HEADER
from sandbox_platform.core.settings import load_settings
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import DeadLetter
from sandbox_platform.ops.deadletters import replay_dead_letter
from tests.sandbox_shapes import register_shapes

pytestmark = pytest.mark.usefixtures("live_ready_limits")
QUEUES = {"sandbox": "sandbox_platform.sandbox", "live": "sandbox_platform.live"}


def _dead_letter_replay(app: Any, tasks: Any, tag: str) -> None:
    database = app.platform_settings.active_database_url
    with session_scope(database) as session:
        row = DeadLetter(
            task_id=f"dead-{tag}",
            task_name="tests.where",
            reason="retries_exhausted",
            message={"task": "tests.where", "args": [tag], "kwargs": {}, "queue": None},
        )
        session.add(row)
        session.flush()
        dead_letter_id = row.id
    replay_dead_letter(app, database, dead_letter_id)


def _direct(app: Any, tasks: Any, tag: str) -> None:
    tasks.where.delay(f"{tag}-first")  # the route's first publish goes through Celery
    tasks.where.delay(tag)  # then the direct publisher


#: entry point -> publish one job tagged ``tag`` with this app
ENTRY_POINTS: dict[str, Callable[[Any, SimpleNamespace, str], Any]] = {
    "delay": lambda app, t, tag: t.where.delay(tag),
    "apply_async": lambda app, t, tag: t.where.apply_async((tag,)),
    "delay, direct publisher": _direct,
    "apply_many": lambda app, t, tag: t.where.apply_many([((tag,), {})]),
    "delay_many": lambda app, t, tag: t.where.delay_many([(tag,)]),
    "enqueue": lambda app, t, tag: enqueue(app, "tests.where", (tag,)),
    "enqueue_many": lambda app, t, tag: enqueue_many(app, "tests.where", [((tag,), {})]),
    "send_task": lambda app, t, tag: app.send_task("tests.where", args=[tag]),
    "signature": lambda app, t, tag: t.where.s(tag).apply_async(),
    "chain": lambda app, t, tag: chain(t.where.si(tag), t.where.si(f"{tag}-next")).apply_async(),
    "group": lambda app, t, tag: group([t.where.si(tag)]).apply_async(),
    "requeue (retry, deferral)": lambda app, t, tag: t.where.requeue(
        (tag,), {}, countdown=0, headers={}
    ),
    "dead-letter replay": _dead_letter_replay,
    "delay_async": lambda app, t, tag: asyncio.run(t.where.delay_async(tag)),
    "enqueue_many_async": lambda app, t, tag: asyncio.run(
        enqueue_many_async(app, "tests.where", [((tag,), {})])
    ),
}


@pytest.fixture
def platform_settings_kwargs(pg_settings_kwargs):  # type: ignore[no-untyped-def]
    return pg_settings_kwargs


@pytest.fixture
def apps(platform_app, platform_settings_kwargs):  # type: ignore[no-untyped-def]
    live = create_app(load_settings(**{**platform_settings_kwargs, "mode": "live"}))
    yield {
        "sandbox": (platform_app, register_shapes(platform_app)),
        "live": (live, register_shapes(live)),
    }
    live.close()


def _messages(redis_client: Any, queue: str) -> dict[str, dict[str, Any]]:
    """The messages on ``queue``, by the tag (first argument) of their job."""
    found = {}
    for raw in redis_client.lrange(queue, 0, -1):
        message = json.loads(raw)
        body = json.loads(base64.b64decode(message["body"]))
        args = body[0]
        if args:
            found[str(args[0])] = message
    return found


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_every_entry_point_stamps_its_own_apps_mode_and_queue(entry, apps, redis_client) -> None:
    for mode in ("live", "sandbox"):  # the live app created last must not decide
        app, tasks = apps[mode]
        ENTRY_POINTS[entry](app, tasks, f"{mode}-job")
    for mode, other in (("sandbox", "live"), ("live", "sandbox")):
        mine = _messages(redis_client, QUEUES[mode])
        assert f"{mode}-job" in mine, f"{entry}: the {mode} job is not on {QUEUES[mode]}"
        assert mine[f"{mode}-job"]["headers"][MODE_HEADER] == mode
        assert f"{other}-job" not in mine
