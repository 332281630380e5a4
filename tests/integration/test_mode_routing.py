"""Sandbox and live jobs never reach a worker of the other mode: every queue is qualified
with the mode; a message of the wrong mode forced onto a queue is still dead-lettered; jobs a
0.1 deployment left on the unqualified queue are moved by ``sandbox-platform queues migrate``."""

from __future__ import annotations

import subprocess
import sys

import pytest
from celery import Celery
from sqlalchemy import func, select

from sandbox_platform import create_app
from sandbox_platform.core.context import MODE_HEADER
from sandbox_platform.core.settings import load_settings
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import DeadLetter
from tests.brokers import ON_BOTH_BROKERS
from tests.helpers import platform_env, wait_until
from tests.sandbox_shapes import register_shapes

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("live_ready_limits")]
SHAPES_APP = "tests.shapes_app"
JOBS = 100


@pytest.fixture
def platform_settings_kwargs(pg_settings_kwargs):  # type: ignore[no-untyped-def]
    return pg_settings_kwargs


@pytest.fixture
def live_app(platform_settings_kwargs):  # type: ignore[no-untyped-def]
    app = create_app(load_settings(**{**platform_settings_kwargs, "mode": "live"}))
    yield app
    app.close()


def _dead_letters(url: str, reason: str | None = None) -> int:
    query = select(func.count()).select_from(DeadLetter)
    if reason:
        query = query.where(DeadLetter.reason == reason)
    with session_scope(url) as session:
        return int(session.scalar(query) or 0)


def _raw_app(broker_url: str) -> Celery:
    """A plain Celery app (no mode qualification): it publishes where it is told."""
    return Celery("raw", broker=broker_url, set_as_current=False)


@ON_BOTH_BROKERS
def test_each_mode_runs_only_its_own_jobs(
    platform_app, live_app, worker_factory, redis_client, pg_databases, broker
) -> None:
    sandbox_db, live_db = pg_databases
    sandbox_tasks, live_tasks = register_shapes(platform_app), register_shapes(live_app)
    worker_factory(platform_app, SHAPES_APP)
    worker_factory(live_app, SHAPES_APP, mode="live", skip_readiness=True)
    for n in range(JOBS):  # interleaved (after each route's first job: the direct publisher)
        sandbox_tasks.where.delay(f"sandbox-{n}")
        live_tasks.where.delay(f"live-{n}")
    sandbox_tasks.where.delay_many([(f"sandbox-bulk-{n}",) for n in range(3)])
    live_tasks.where.delay_many([(f"live-bulk-{n}",) for n in range(3)])

    wait_until(
        lambda: redis_client.llen("ran:sandbox") + redis_client.llen("ran:live") == 2 * JOBS + 6,
        timeout=120,
        message="not every job ran",
    )
    ran_sandbox = {x.decode() for x in redis_client.lrange("ran:sandbox", 0, -1)}
    ran_live = {x.decode() for x in redis_client.lrange("ran:live", 0, -1)}
    bulk = {f"bulk-{n}" for n in range(3)}
    assert ran_sandbox == {f"sandbox-{n}" for n in range(JOBS)} | {f"sandbox-{b}" for b in bulk}
    assert ran_live == {f"live-{n}" for n in range(JOBS)} | {f"live-{b}" for b in bulk}
    assert _dead_letters(sandbox_db) == 0 and _dead_letters(live_db) == 0

    # the backstop: a live message published straight onto the sandbox queue
    raw = _raw_app(broker.url)
    raw.send_task(
        "tests.where",
        args=["forced"],
        queue="sandbox_platform.sandbox",
        headers={MODE_HEADER: "live"},
    )
    raw.close()
    wait_until(lambda: _dead_letters(sandbox_db, "wrong_mode") == 1, timeout=60)
    assert redis_client.llen("ran:sandbox") == JOBS + 3  # it did not run


def test_jobs_left_on_the_unqualified_queue_are_moved_and_run(
    platform_app, worker_factory, redis_client, redis_url, platform_settings_kwargs
) -> None:
    raw = _raw_app(redis_url)  # as 0.1 published: the unqualified default queue
    for n in range(5):
        raw.send_task(
            "tests.where",
            args=[f"old-{n}"],
            queue="sandbox_platform",
            headers={MODE_HEADER: "sandbox"},
        )
    raw.send_task(
        "tests.where", args=["old-live"], queue="sandbox_platform", headers={MODE_HEADER: "live"}
    )
    assert redis_client.llen("sandbox_platform") == 6

    migrated = subprocess.run(
        [sys.executable, "-m", "sandbox_platform", "queues", "migrate", "--app", SHAPES_APP],
        env=platform_env(**platform_settings_kwargs),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrated.returncode == 0, migrated.stderr
    assert "5 job(s) to sandbox_platform.sandbox, 1 to sandbox_platform.live" in migrated.stdout
    assert redis_client.llen("sandbox_platform") == 0
    assert redis_client.llen("sandbox_platform.live") == 1  # waits for a live worker

    worker_factory(platform_app, SHAPES_APP)
    wait_until(lambda: redis_client.llen("ran:sandbox") == 5, timeout=60)
    assert sorted(x.decode() for x in redis_client.lrange("ran:sandbox", 0, -1)) == [
        f"old-{n}" for n in range(5)
    ]


@pytest.mark.parametrize("broker", ["rabbitmq"], indirect=True)
def test_queues_migrate_refuses_rabbitmq_in_one_line(platform_settings_kwargs) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "sandbox_platform", "queues", "migrate", "--app", SHAPES_APP],
        env=platform_env(**platform_settings_kwargs),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2, refused.stderr
    assert "RabbitMQ" in refused.stderr and "nothing to migrate" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
