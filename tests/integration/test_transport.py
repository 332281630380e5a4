"""The platform's Redis transport against a real Redis: kombu consumers on it (lean and
stock), and a real worker's broker round trips per job.

Lean consuming takes a message and records it as unacknowledged in one Lua call, with the
pending acknowledgements riding along; nothing is left unacknowledged once the consumer is
done, and an element that is not a message is dead-lettered, not lost."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Producer, Queue

from sandbox_platform.broker import transport
from tests.helpers import wait_until

TRANSPORT = "sandbox_platform.broker.transport:Transport"
QUEUE = "transport-test"


def _connection(redis_url: str, *, lean: bool) -> Connection:
    return Connection(
        redis_url,
        transport=TRANSPORT,
        transport_options={transport.LEAN_OPTION: lean, "visibility_timeout": 60},
    )


def _until(connection: Connection, done) -> None:  # type: ignore[no-untyped-def]
    """Drain events until ``done()`` (a deadline of 60 s)."""

    def step() -> bool:
        if done():
            return True
        with contextlib.suppress(socket.timeout):
            connection.drain_events(timeout=0.5)
        return bool(done())

    wait_until(step, timeout=60)


def _drain(connection: Connection, count: int, received: list[str]) -> None:
    queue = Queue(QUEUE, Exchange(QUEUE, "direct"), QUEUE)

    def on_message(body: str, message) -> None:  # type: ignore[no-untyped-def]
        received.append(body)
        message.ack()

    with Consumer(connection, [queue], callbacks=[on_message], accept=["json"]):
        _until(connection, lambda: len(received) >= count)


def _publish(connection: Connection, bodies: list[str]) -> None:
    queue = Queue(QUEUE, Exchange(QUEUE, "direct"), QUEUE)
    producer = Producer(connection)
    for body in bodies:
        producer.publish(
            body, exchange=queue.exchange, routing_key=QUEUE, declare=[queue], serializer="json"
        )


@pytest.mark.parametrize("lean", [True, False])
def test_every_message_is_delivered_once_and_none_stays_unacknowledged(
    redis_url: str, redis_client: redis.Redis, lean: bool
) -> None:
    bodies = [f"m{n}" for n in range(50)]
    with _connection(redis_url, lean=lean) as connection:
        _publish(connection, bodies)
        received: list[str] = []
        _drain(connection, len(bodies), received)
        assert sorted(received) == sorted(bodies)
        assert connection.default_channel._lean is lean  # type: ignore[attr-defined]
    # the last acknowledgements were buffered: the channel's close sent them
    assert redis_client.hlen("unacked") == 0
    assert redis_client.zcard("unacked_index") == 0
    assert redis_client.llen(QUEUE) == 0


def test_a_lean_fetch_records_the_message_before_it_is_acknowledged(
    redis_url: str, redis_client: redis.Redis
) -> None:
    with _connection(redis_url, lean=True) as connection:
        _publish(connection, ["held"])
        seen: list[int] = []
        queue = Queue(QUEUE, Exchange(QUEUE, "direct"), QUEUE)

        def on_message(body: str, message) -> None:  # type: ignore[no-untyped-def]
            seen.append(redis_client.hlen("unacked"))  # recorded by the same call that took it
            message.ack()

        with Consumer(connection, [queue], callbacks=[on_message], accept=["json"]):
            _until(connection, lambda: seen)
    assert seen == [1]
    assert redis_client.hlen("unacked") == 0


def _drain_around(
    redis_url: str, handler: transport.MalformedHandler, push_bad: Callable[[], object]
) -> list[str]:
    """Publish "before", push an element that is not a message, publish "after" and drain
    both messages with ``handler`` set for what is not one; the bodies received."""
    with _connection(redis_url, lean=True) as connection:
        transport.set_malformed_handler(connection.transport, handler)
        _publish(connection, ["before"])
        push_bad()
        _publish(connection, ["after"])
        received: list[str] = []
        _drain(connection, 2, received)
    return received


def test_an_element_that_is_not_a_message_is_handed_over_and_the_consumer_goes_on(
    redis_url: str, redis_client: redis.Redis
) -> None:
    handed: list[tuple[str, bytes]] = []
    received = _drain_around(
        redis_url,
        lambda queue, raw, error: handed.append((queue, raw)),
        lambda: redis_client.lpush(QUEUE, b"\x00\xffnot json"),
    )
    assert received == ["before", "after"]
    assert handed == [(QUEUE, b"\x00\xffnot json")]
    assert redis_client.llen(f"{QUEUE}.malformed") == 0  # stored by the handler: removed


def test_an_element_kept_aside_when_its_handler_fails(
    redis_url: str, redis_client: redis.Redis
) -> None:
    def failing(queue: str, raw: bytes, error: BaseException) -> None:
        raise RuntimeError("database down")

    received = _drain_around(redis_url, failing, lambda: redis_client.lpush(QUEUE, b"garbage"))
    assert received == ["before", "after"]
    assert redis_client.lrange(f"{QUEUE}.malformed", 0, -1) == [b"garbage"]


@pytest.mark.slow
def test_a_busy_worker_takes_each_job_in_one_broker_call(
    guarded, worker_factory, platform_app, redis_client
) -> None:
    worker_factory(platform_app, "tests.worker_app")
    jobs = 200
    redis_client.config_resetstat()
    for n in range(jobs):
        guarded.limited.delay("transport-runs", n)
    wait_until(lambda: redis_client.llen("transport-runs") == jobs, timeout=120)
    stats = redis_client.info("commandstats")

    def calls(command: str) -> int:
        return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))

    assert calls("rpop") >= jobs  # every job taken by the fetch script
    assert calls("brpop") == 0  # no BRPOP; and no MULTI/EXEC bookkeeping per job (kombu: two)
    assert calls("multi") < jobs / 10, calls("multi")
    # acknowledged (each with the next fetch: the last one just after its body returned)
    wait_until(
        lambda: (
            int(redis_client.info("commandstats").get("cmdstat_hdel", {}).get("calls", 0)) >= jobs
        ),
        timeout=30,
        message="not every job was acknowledged",
    )
