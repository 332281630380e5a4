"""Bulk enqueue (``delay_many`` / ``apply_many`` / ``enqueue_many``) against a real Redis and a
real worker: every job passes the same checks as ``delay``, the batch goes out in a few round
trips, the enqueue-side dedupe of the whole batch is one Lua call, and a batch with one bad job
publishes nothing."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator

import pytest
import redis
from celery import signals
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


def _marked(client: redis.Redis) -> set[bytes]:
    """The idempotency records that name a first job (the enqueue-side dedupe)."""
    return {key for key in client.keys("sp:idem:r:*") if client.hexists(key, "tid")}


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
    assert not redis_client.keys("sp:idem:*")  # no dedupe mark was written either


def test_a_key_reused_with_other_arguments_publishes_nothing(guarded, redis_client) -> None:
    guarded.effect_once.delay("same", 0.0, "starts-a")
    assert redis_client.llen(QUEUE) == 1
    batch = [("other", 0.0, "starts-b"), ("same", 0.0, "starts-OTHER")]
    with pytest.raises(IdempotencyConflict, match=r"'tests\.effect_once:same' was used before"):
        guarded.effect_once.delay_many(batch)
    assert redis_client.llen(QUEUE) == 1
    assert _marked(redis_client) == {b"sp:idem:r:{tests.effect_once:same}"}  # all or nothing

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
        assert _marked(redis_client) == set()
    finally:
        reset_runtime()
        app.close()


VOLATILE_HEADERS = {"id", "root_id", "eta", "expires", "sp_correlation_id", "sp_enqueued_at"}
VOLATILE_PROPERTIES = {"correlation_id", "delivery_tag"}


def _messages(client: redis.Redis) -> list[dict[str, object]]:
    """Every message in the platform's queues (any priority), newest first, with the fields
    that differ from job to job (ids, times) left out."""
    found = []
    for key in sorted(client.keys(f"{QUEUE}*")):
        for raw in client.lrange(key, 0, -1):
            message = json.loads(raw)
            headers = {k: v for k, v in message["headers"].items() if k not in VOLATILE_HEADERS}
            properties = message["properties"]
            kept = {k: v for k, v in properties.items() if k not in VOLATILE_PROPERTIES}
            body = json.loads(base64.b64decode(message["body"]))
            found.append({**message, "headers": headers, "properties": kept, "body": body})
    return found


@pytest.mark.parametrize(
    "options",
    [{}, {"countdown": 30, "priority": 3}, {"expires": 60}],
    ids=["plain", "countdown-priority", "expires"],
)
def test_a_bulk_job_is_the_message_apply_async_sends(options, guarded, redis_client) -> None:
    """After a route's first job, a bulk enqueue builds the messages itself (no per-call
    ``send_task``): each is the message ``apply_async`` sends, signals included."""
    published: list[str] = []

    def seen(headers: dict[str, object] | None = None, **_kwargs: object) -> None:
        published.append(str((headers or {}).get("id")))

    signals.before_task_publish.connect(seen, weak=False)
    signals.after_task_publish.connect(seen, weak=False)
    try:
        single = guarded.write_order.apply_async(("x",), **options)
        reference = _messages(redis_client)
        redis_client.flushdb()
        results = guarded.write_order.apply_many([(("x",), {})] * 3, **options)
    finally:
        signals.before_task_publish.disconnect(seen)
        signals.after_task_publish.disconnect(seen)
    bulk = _messages(redis_client)
    assert len(reference) == 1 and len(bulk) == 3
    assert all(message == reference[0] for message in bulk)
    ids = [r.id for r in results]
    assert published == [single.id] * 2 + [i for i in ids for _ in range(2)]
    raw = [
        json.loads(m)
        for key in redis_client.keys(f"{QUEUE}*")
        for m in redis_client.lrange(key, 0, -1)
    ]
    assert sorted(m["headers"]["id"] for m in raw) == sorted(ids)
    assert all(m["properties"]["correlation_id"] == m["headers"]["id"] for m in raw)
    assert all(m["headers"]["root_id"] == m["headers"]["id"] for m in raw)


def test_a_bulk_enqueue_inside_a_task_carries_its_parent(guarded, redis_client) -> None:
    """Jobs enqueued in bulk by a running task name it as their parent and its root as theirs,
    as ``apply_async`` does (the worker's task stack is what Celery reads)."""
    from celery._state import _task_stack

    parent = guarded.write_order
    parent.push_request(id="parent-1", root_id="root-1", called_directly=False)
    _task_stack.push(parent)
    try:
        results = guarded.write_order.delay_many([("a",), ("b",), ("c",)])
    finally:
        _task_stack.pop()
        parent.pop_request()
    raw = [json.loads(m) for m in redis_client.lrange(QUEUE, 0, -1)]
    assert sorted(m["headers"]["id"] for m in raw) == sorted(r.id for r in results)
    assert {(m["headers"]["parent_id"], m["headers"]["root_id"]) for m in raw} == {
        ("parent-1", "root-1")
    }


def test_the_direct_path_stands_aside_in_eager_mode(guarded, platform_app) -> None:
    """Eager mode, sent events and custom routes are Celery's to handle: every job of the
    batch then goes through ``apply_async``."""
    from sandbox_platform.broker.publisher import BulkPublisher

    with platform_app.producer_or_acquire() as producer:
        assert BulkPublisher(guarded.write_order, producer).enabled
        for setting in ("task_always_eager", "task_send_sent_event"):
            platform_app.conf[setting] = True
            try:
                assert not BulkPublisher(guarded.write_order, producer).enabled, setting
            finally:
                platform_app.conf[setting] = False


@pytest.mark.parametrize("broker", ["rabbitmq"], indirect=True)
def test_delay_many_on_rabbitmq_publishes_each_job_once_and_each_runs_once(
    guarded, platform_app, worker_factory, redis_client, sqlite_url, broker
) -> None:
    """No Redis pipeline on RabbitMQ: the batch's messages go out one by one on one producer;
    the dedupe of the whole batch is still one Lua call."""
    orders = [f"rbulk-{n}" for n in range(100)]
    items = [(order, 0.0, "rbulk-starts") for order in orders]
    results = guarded.effect_once.delay_many(items + items[:20])  # 20 submitted twice
    ids = [result.id for result in results]
    assert ids[100:] == ids[:20] and len(set(ids[:100])) == 100
    assert broker.queue_length(QUEUE) == 100  # the duplicates published nothing

    worker_factory(platform_app, WORKER_APP)
    expected = sorted(f"effect:{order}" for order in orders)
    wait_until(lambda: _effects(sqlite_url) == expected, timeout=120, message="jobs not run")
    wait_until(lambda: redis_client.llen("rbulk-starts") >= 100, timeout=30)
    assert redis_client.llen("rbulk-starts") == 100  # no job ran twice


def _count_send_task(app: object, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The task names ``app.send_task`` (Celery's per-call path) is called with from now on;
    the real ``send_task`` still publishes each one."""
    names: list[str] = []
    send_task = app.send_task  # type: ignore[attr-defined]

    def counting(*args: object, **kwargs: object) -> object:
        names.append(str(args[0]))
        return send_task(*args, **kwargs)

    monkeypatch.setattr(app, "send_task", counting)
    return names


@pytest.mark.parametrize(
    "options",
    [{}, {"countdown": 30, "priority": 3}, {"expires": 60}],
    ids=["plain", "countdown-priority", "expires"],
)
def test_a_single_job_after_its_routes_first_is_published_directly_as_celery_would(
    options, guarded, platform_app, redis_client, monkeypatch
) -> None:
    """``apply_async`` of a route published before skips Celery's per-call ``send_task``
    (the direct publisher, one job): the same message, the same signals, and Celery's
    publish retry policy."""
    platform_app.__dict__.pop("_sp_declared_routes", None)  # the route's first publish is next
    through_celery = _count_send_task(platform_app, monkeypatch)
    policies: list[object] = []

    def seen(retry_policy: object = None, **_kwargs: object) -> None:
        policies.append(retry_policy)

    signals.before_task_publish.connect(seen, weak=False)
    try:
        guarded.write_order.apply_async(("x",), **options)
        reference = _messages(redis_client)
        redis_client.flushdb()
        later = [guarded.write_order.apply_async(("x",), **options) for _ in range(2)]
    finally:
        signals.before_task_publish.disconnect(seen)
    assert through_celery == ["tests.write_order"]  # only the first went through send_task
    direct = _messages(redis_client)
    assert len(direct) == 2 and all(message == reference[0] for message in direct)
    raw = [
        json.loads(m)
        for key in redis_client.keys(f"{QUEUE}*")
        for m in redis_client.lrange(key, 0, -1)
    ]
    assert sorted(m["headers"]["id"] for m in raw) == sorted(r.id for r in later)
    assert policies[0] == policies[1] == policies[2] == platform_app.conf.task_publish_retry_policy


def test_a_single_job_with_options_only_celery_knows_goes_through_celery(
    guarded, platform_app, redis_client, monkeypatch
) -> None:
    guarded.write_order.apply_async(("x",))  # the route is known from here on
    through_celery = _count_send_task(platform_app, monkeypatch)
    result = guarded.write_order.apply_async(("x",), shadow="shadowed", retry=False)
    assert through_celery == ["tests.write_order"]
    assert result.id
    (raw,) = [json.loads(m) for m in redis_client.lrange(QUEUE, 0, 0)]
    assert raw["headers"]["shadow"] == "shadowed"


@pytest.mark.parametrize("retry", [True, False], ids=["retried", "not-retried"])
def test_a_direct_single_publish_is_retried_on_a_connection_error_as_celery_retries_it(
    retry, guarded, platform_app, redis_client, monkeypatch
) -> None:
    """The direct path keeps Celery's publish retry: the transport's first push of the job
    fails with a connection error (injected once into the real transport), kombu's retry
    policy sends it again and it is queued once; with ``task_publish_retry`` off the error
    reaches the caller (Celery's documented behaviour)."""
    from sandbox_platform.broker import transport

    guarded.write_order.apply_async(("first",))  # the route's first publish (Celery's path)
    redis_client.flushdb()
    monkeypatch.setitem(platform_app.conf, "task_publish_retry", retry)
    monkeypatch.setitem(
        platform_app.conf, "task_publish_retry_policy", {"max_retries": 3, "interval_start": 0}
    )
    failures = [redis.ConnectionError("injected: connection lost during the push")]
    original = transport.Channel._put

    def failing_once(self: transport.Channel, queue: str, message: dict, **kwargs: object) -> None:  # type: ignore[type-arg]
        if failures:
            raise failures.pop()
        original(self, queue, message, **kwargs)

    monkeypatch.setattr(transport.Channel, "_put", failing_once)
    if retry:
        result = guarded.write_order.apply_async(("second",))
        (raw,) = redis_client.lrange(QUEUE, 0, -1)
        assert json.loads(raw)["headers"]["id"] == result.id
    else:
        with pytest.raises(redis.ConnectionError, match="injected"):
            guarded.write_order.apply_async(("second",))
        assert redis_client.llen(QUEUE) == 0
    assert failures == []  # every injected failure was met
