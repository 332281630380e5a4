"""Bulk enqueue (``delay_many`` / ``apply_many`` / ``enqueue_many``) against a real Redis and a
real worker: every job passes the same checks as ``delay``, the batch goes out in a few round
trips, the enqueue-side dedupe of the whole batch is one Lua call, and a batch with one bad job
publishes nothing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import redis
from redis.connection import Connection
from sqlalchemy import select

from sandbox_platform import enqueue_many
from sandbox_platform.core.errors import IdempotencyConflict, PayloadError, UnknownTaskError
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import Effect
from tests.helpers import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("live_ready_limits")]
WORKER_APP = "tests.worker_app"
QUEUE = "sandbox_platform.sandbox"


@contextlib.contextmanager
def round_trips() -> Iterator[list[int]]:
    """Count the requests this process sends to Redis (pipelines count once)."""
    count = [0]
    original = Connection.send_packed_command

    def counting(self: Connection, command: object, check_health: bool = True) -> None:
        count[0] += 1
        original(self, command, check_health)  # type: ignore[arg-type]

    Connection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        yield count
    finally:
        Connection.send_packed_command = original  # type: ignore[method-assign]


def _commands(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def _effects(url: str) -> list[str]:
    with session_scope(url) as session:
        return sorted(session.scalars(select(Effect.idempotency_key)))


def test_delay_many_publishes_in_one_pipeline_and_each_effect_runs_once(
    guarded, platform_app, worker_factory, redis_client, sqlite_url
) -> None:
    orders = [f"bulk-{n}" for n in range(300)]
    items = [(order, 0.0, "bulk-starts") for order in orders]
    guarded.effect_once.delay_many(items[:1])  # connections and scripts are warm now
    before = _commands(redis_client)
    with round_trips() as sent:
        results = guarded.effect_once.delay_many(items + items[:50])  # 50 submitted twice
    after = _commands(redis_client)

    assert sent[0] <= 4, sent[0]  # one dedupe script + one publish pipeline (+ reconnects)
    assert after.get("lpush", 0) - before.get("lpush", 0) == 300 - 1  # the warm-up's is done
    assert after.get("evalsha", 0) - before.get("evalsha", 0) == 1
    assert redis_client.llen(QUEUE) == 300
    ids = [result.id for result in results]
    assert ids[300:] == ids[:50]  # a duplicate answers with the first job's id
    assert len(set(ids[:300])) == 300

    worker_factory(platform_app, WORKER_APP)
    expected = sorted(f"effect:{order}" for order in orders)
    wait_until(lambda: _effects(sqlite_url) == expected, timeout=120, message="jobs not run")
    wait_until(lambda: redis_client.llen("bulk-starts") >= 300, timeout=30)
    assert redis_client.llen("bulk-starts") == 300  # no job ran twice


def test_one_bad_job_publishes_nothing(guarded, redis_client) -> None:
    good = [("fine", 0.0, "starts") for _ in range(3)]
    with pytest.raises(PayloadError, match="not JSON-serialisable"):
        guarded.effect_once.delay_many([*good, ("bad", object(), "starts")])
    assert redis_client.llen(QUEUE) == 0
    assert not redis_client.keys("sp:enq:*")  # no dedupe key was written either


def test_a_key_reused_with_other_arguments_publishes_nothing(guarded, redis_client) -> None:
    guarded.effect_once.delay("same", 0.0, "starts-a")
    assert redis_client.llen(QUEUE) == 1
    batch = [("other", 0.0, "starts-b"), ("same", 0.0, "starts-OTHER")]
    with pytest.raises(IdempotencyConflict, match=r"'tests\.effect_once:same' was used before"):
        guarded.effect_once.delay_many(batch)
    assert redis_client.llen(QUEUE) == 1
    assert redis_client.keys("sp:enq:*") == [b"sp:enq:{tests.effect_once:same}"]  # all or nothing

    twice = [("twin", 0.0, "starts-a"), ("twin", 0.0, "starts-b")]
    with pytest.raises(IdempotencyConflict, match="used twice in the batch"):
        guarded.effect_once.delay_many(twice)
    assert redis_client.llen(QUEUE) == 1


def test_enqueue_many_by_name(guarded, platform_app, redis_client) -> None:
    with pytest.raises(UnknownTaskError, match=r"no task named 'tests\.nope'"):
        enqueue_many(platform_app, "tests.nope", [((), {})])
    results = enqueue_many(platform_app, "tests.write_order", [(("a",), {}), ((), {"value": "b"})])
    assert len(results) == 2
    assert redis_client.llen(QUEUE) == 2
    assert guarded.write_order.delay_many([]) == []


@pytest.mark.parametrize("bulk", [False, True], ids=["delay", "delay_many"])
def test_a_failed_publish_forgets_its_dedupe_keys(
    bulk, platform_settings_kwargs, private_redis, redis_client
) -> None:
    """The broker (a private Redis, stopped) refuses the publish after the dedupe keys were
    written in the coordination Redis: they are forgotten, so a re-submission publishes again
    instead of answering with a job that was never sent."""
    from kombu.exceptions import OperationalError

    from sandbox_platform.app.factory import create_app
    from sandbox_platform.app.runtime import reset_runtime
    from sandbox_platform.core.settings import load_settings
    from tests.task_defs import register

    broker, broker_url = private_redis
    reset_runtime()
    app = create_app(load_settings(**platform_settings_kwargs, broker_url=broker_url))
    app.conf.broker_connection_retry = False
    app.conf.broker_connection_max_retries = 0
    app.conf.task_publish_retry = False
    tasks = register(app)
    try:
        broker.kill()
        broker.wait(10)
        with pytest.raises(OperationalError):
            if bulk:
                tasks.effect_once.delay_many([("lost-1", 0.0, "s"), ("lost-2", 0.0, "s")])
            else:
                tasks.effect_once.delay("lost-1", 0.0, "s")
        assert redis_client.keys("sp:enq:*") == []
    finally:
        reset_runtime()
        app.close()
