"""The async enqueue (``await task.delay_async(...)``, ``await enqueue_many_async(...)``) from a
running event loop, against a real Redis (and RabbitMQ) and a real worker: the loop keeps
running while the broker is slow (and the sync ``.delay`` visibly does not), and every guard
of the sync path applies unchanged: dedupe, correlation id, payload checks, bulk folding.

The async methods run the sync enqueue path on a thread of ``sandbox_platform.app.offload``'s
pool (docs/async-enqueue.md), so these tests are about what the loop sees and what travels to
the thread; the guards themselves are tested on the sync path."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from celery import Celery, signals
from sqlalchemy import select

from sandbox_platform import enqueue_async, enqueue_many, enqueue_many_async
from sandbox_platform.core.context import CORRELATION_HEADER, bind_correlation_id
from sandbox_platform.core.errors import PayloadError, UnknownTaskError
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import JobRun
from tests.brokers import ON_BOTH_BROKERS, TestBroker
from tests.helpers import wait_until
from tests.ticker import ticking

pytestmark = pytest.mark.slow
WORKER_APP = "tests.worker_app"
QUEUE = "sandbox_platform.sandbox"
#: the ticker's period, and the gap that means at least one tick was missed
MISSED_TICK = 0.020


def _messages(client: redis.Redis, queue: str = QUEUE) -> list[dict[str, Any]]:
    """The messages waiting on ``queue``, oldest first, with their decoded body."""
    found = []
    for raw in reversed(client.lrange(queue, 0, -1)):
        message = json.loads(raw)
        message["body"] = json.loads(base64.b64decode(message["body"]))
        found.append(message)
    return found


def _runs(database_url: str, task_name: str) -> dict[str, JobRun]:
    with session_scope(database_url) as session:
        runs = list(session.scalars(select(JobRun).where(JobRun.task_name == task_name)))
        session.expunge_all()
    return {run.task_id: run for run in runs if run.state == "succeeded"}


# -- the event loop is not blocked --------------------------------------------------------------


@pytest.fixture
def private_app(
    private_redis: tuple[subprocess.Popen[bytes], str], platform_settings_kwargs: dict[str, object]
) -> Iterator[tuple[Celery, SimpleNamespace, redis.Redis]]:
    """An app whose broker and coordination Redis is a redis-server of this test only (it is
    paused with ``CLIENT PAUSE``), with the test tasks; and a client of that server."""
    from sandbox_platform.app.factory import create_app, release_app
    from sandbox_platform.app.runtime import reset_runtime
    from sandbox_platform.core.settings import load_settings
    from tests.task_defs import register

    _, url = private_redis
    settings = {**platform_settings_kwargs, "redis_url": url, "broker_url": None}
    reset_runtime()
    app = create_app(load_settings(**settings))
    client = redis.Redis.from_url(url)
    try:
        yield app, register(app), client
    finally:
        client.close()
        reset_runtime()
        release_app(app)


async def _without_missed_ticks(
    work: Callable[[], Awaitable[Any]], *, at_least: float = 0.0
) -> list[float]:
    """Run ``work`` under the ticker until a run misses no tick (3 runs at most), each run
    taking at least ``at_least`` seconds; return every run's largest gap.

    A loop blocked by the enqueue misses ticks in every run (the control below shows it
    does, every time); a run that misses one because the machine did not schedule this
    process (other test suites share its 2 cores) is measured again."""
    gaps: list[float] = []
    for _ in range(3):
        _, elapsed, gap = await ticking(work, collect_first=True)
        assert elapsed >= at_least, f"the work took {elapsed * 1000:.1f} ms"
        gaps.append(gap)
        if gap < MISSED_TICK:
            return gaps
    pytest.fail(
        f"a tick was missed in every run: largest gaps {[round(g * 1000, 1) for g in gaps]} ms"
    )


def test_the_loop_keeps_ticking_while_delay_async_waits_on_the_broker(private_app) -> None:
    """200 ``await delay_async`` (100 one after the other, 100 four at a time): no tick of a
    10 ms ticker is missed. The control: Redis paused (``CLIENT PAUSE 50``) under a sync
    ``.delay`` stops the loop for the pause; under ``await delay_async`` it does not."""
    _, tasks, client = private_app
    tags = itertools.count()
    published: list[int] = []

    async def delay_async() -> str:
        published.append(tag := next(tags))
        return str((await tasks.stamp.delay_async("ticks", tag)).id)

    async def two_hundred() -> None:
        for _ in range(100):
            await delay_async()
        for _ in range(25):
            await asyncio.gather(*(delay_async() for _ in range(4)))

    async def paused(call: Callable[[], Awaitable[Any]]) -> Any:
        client.execute_command("CLIENT", "PAUSE", 50)
        return await call()

    async def sync_delay() -> str:
        published.append(tag := next(tags))
        return str(tasks.stamp.delay("ticks", tag).id)  # blocks the loop: the control

    async def main() -> None:
        # the pool's threads and their broker connections are made once, before measuring
        await asyncio.gather(*(tasks.stamp.delay_async("warm", i) for i in range(8)))

        await _without_missed_ticks(two_hundred)

        _, blocked_for, sync_gap = await ticking(lambda: paused(sync_delay), collect_first=True)
        assert blocked_for >= 0.045  # the pause was felt by the publish...
        assert sync_gap > MISSED_TICK, sync_gap  # ...and the loop stopped for it

        # the same pause under delay_async: felt by the publish, not by the loop
        await _without_missed_ticks(lambda: paused(delay_async), at_least=0.045)

    asyncio.run(main())
    assert len(published) >= 202
    found = [m["body"][0][1] for m in _messages(client) if m["body"][0][0] == "ticks"]
    assert sorted(found) == sorted(published)


def test_a_cancelled_delay_async_publishes_once(private_app) -> None:
    """The awaiting coroutine is cancelled while its publish runs on the pool's thread: the
    publish completes (once), and the same idempotency key re-submitted answers with it."""
    _, tasks, client = private_app
    entered, release = threading.Event(), threading.Event()

    def hold(sender: str | None = None, **_: Any) -> None:
        if sender == "tests.effect_once":
            entered.set()
            release.wait(10)

    async def main() -> str:
        signals.before_task_publish.connect(hold, weak=False)
        try:
            call = asyncio.create_task(tasks.effect_once.delay_async("cancel-1", 0.0, "s"))
            deadline = time.monotonic() + 10
            while not entered.is_set():  # the publish is running on its thread
                assert time.monotonic() < deadline, "the publish never started"
                await asyncio.sleep(0.005)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
        finally:
            release.set()
            signals.before_task_publish.disconnect(hold)
        wait_until(lambda: client.llen(QUEUE) == 1, timeout=10, message="never published")
        again = await tasks.effect_once.delay_async("cancel-1", 0.0, "s")
        return str(again.id)

    again_id = asyncio.run(main())
    messages = _messages(client)
    assert len(messages) == 1  # published once: not lost, not doubled
    assert messages[0]["headers"]["id"] == again_id


# -- the guards of the sync path, on a real worker -----------------------------------------------


def test_dedupe_of_delay_async_agrees_with_delay_and_runs_once(
    guarded, platform_app, worker_factory, redis_client, platform_settings_kwargs
) -> None:
    effect_once = guarded.effect_once

    async def main() -> tuple[list[str], list[str]]:
        first = await effect_once.delay_async("async-a", 0.0, "started:a")
        second = await effect_once.delay_async("async-a", 0.0, "started:a")
        sync = effect_once.delay("async-b", 0.0, "started:b")
        after_sync = await effect_once.delay_async("async-b", 0.0, "started:b")
        return [first.id, second.id], [sync.id, after_sync.id]

    a_ids, b_ids = asyncio.run(main())
    assert a_ids[0] == a_ids[1] and b_ids[0] == b_ids[1] and a_ids[0] != b_ids[0]
    assert [m["headers"]["id"] for m in _messages(redis_client)] == [a_ids[0], b_ids[0]]

    worker_factory(platform_app, WORKER_APP)
    database = str(platform_settings_kwargs["database_url"])
    wait_until(
        lambda: set(_runs(database, "tests.effect_once")) == {a_ids[0], b_ids[0]},
        timeout=30,
        message="the two jobs did not run",
    )
    assert redis_client.lrange("started:a", 0, -1) != [] and redis_client.llen("started:a") == 1
    assert redis_client.llen("started:b") == 1
    assert redis_client.llen(QUEUE) == 0


def test_the_correlation_id_of_the_caller_travels(
    guarded, platform_app, worker_factory, redis_client, platform_settings_kwargs
) -> None:
    stamp = guarded.stamp

    async def main() -> tuple[str, str, str]:
        with bind_correlation_id("corr-x"):
            bound = await stamp.delay_async("corr", 1)
        unbound = await stamp.delay_async("corr", 2)
        sync = stamp.delay("corr", 3)
        return bound.id, unbound.id, sync.id

    bound_id, unbound_id, sync_id = asyncio.run(main())
    headers = {
        m["headers"]["id"]: m["headers"][CORRELATION_HEADER] for m in _messages(redis_client)
    }
    assert headers[bound_id] == "corr-x"
    # without a bound id: a fresh one, as .delay gives
    fresh = [headers[unbound_id], headers[sync_id]]
    assert all(len(cid) == 32 and int(cid, 16) >= 0 for cid in fresh) and fresh[0] != fresh[1]

    worker_factory(platform_app, WORKER_APP)
    database = str(platform_settings_kwargs["database_url"])
    runs = wait_until(
        lambda: (found := _runs(database, "tests.stamp")) and len(found) == 3 and found,
        timeout=30,
        message="the three jobs did not run",
    )
    assert {task_id: run.correlation_id for task_id, run in runs.items()} == headers


# -- the same checks and errors as the sync path ------------------------------------------------


def test_payload_and_name_errors_surface_unchanged(guarded, platform_app, redis_client) -> None:
    with pytest.raises(PayloadError) as sync_error:
        guarded.stamp.delay("bad", object())

    async def main() -> None:
        with pytest.raises(PayloadError) as async_error:
            await guarded.stamp.delay_async("bad", object())
        assert str(async_error.value) == str(sync_error.value)
        with pytest.raises(PayloadError):
            await guarded.stamp.apply_many_async([(("ok", 1), {}), (("bad", object()), {})])
        with pytest.raises(UnknownTaskError, match=r"no task named 'tests\.nope'"):
            await enqueue_async(platform_app, "tests.nope", ("x",))
        with pytest.raises(UnknownTaskError):
            await enqueue_many_async(platform_app, "tests.nope", [(("x",), {})])

    asyncio.run(main())
    assert redis_client.llen(QUEUE) == 0  # nothing published


def test_enqueue_many_async_folds_duplicates_like_enqueue_many(
    guarded, platform_app, redis_client
) -> None:
    calls = [(("many-1", 0.0, "s"), {}), (("many-2", 0.0, "s"), {}), (("many-1", 0.0, "s"), {})]

    async def main() -> list[str]:
        results = await enqueue_many_async(platform_app, "tests.effect_once", calls)
        return [result.id for result in results]

    ids = asyncio.run(main())
    assert ids[0] == ids[2] and len(set(ids)) == 2
    assert [m["headers"]["id"] for m in _messages(redis_client)] == ids[:2]
    # the sync bulk enqueue of the same keys answers with the same jobs, publishing nothing
    assert [r.id for r in enqueue_many(platform_app, "tests.effect_once", calls)] == ids

    async def by_task() -> list[str]:
        items = [
            ("many-3", 0.0, "s"),
            {"order_id": "many-4", "sleep_seconds": 0.0, "started_key": "s"},
        ]
        delayed = await guarded.effect_once.delay_many_async(items)
        applied = await guarded.effect_once.apply_many_async([(("many-2", 0.0, "s"), {})])
        return [r.id for r in delayed + applied]

    more = asyncio.run(by_task())
    assert len(set(more)) == 3 and more[2] == ids[1]  # many-2 was enqueued before
    assert redis_client.llen(QUEUE) == 4


@ON_BOTH_BROKERS
def test_the_async_enqueue_works_on_both_brokers(guarded, platform_app, broker: TestBroker) -> None:
    """One enqueue path: on RabbitMQ too, ``delay_async`` and ``enqueue_many_async`` publish
    (on a pool thread, through kombu's AMQP connection) and dedupe as the sync calls do."""

    async def main() -> list[str]:
        one = await guarded.effect_once.delay_async("both-1", 0.0, "s")
        again = await enqueue_async(platform_app, "tests.effect_once", ("both-1", 0.0, "s"))
        many = await enqueue_many_async(
            platform_app, "tests.effect_once", [(("both-2", 0.0, "s"), {})] * 2
        )
        return [one.id, again.id, *(r.id for r in many)]

    ids = asyncio.run(main())
    assert ids[0] == ids[1] and ids[2] == ids[3] and ids[0] != ids[2]
    wait_until(lambda: broker.queue_length(QUEUE) == 2, timeout=10, message="not 2 jobs queued")
