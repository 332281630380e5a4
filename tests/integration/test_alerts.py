"""Alerts against real services: Redis throttling, PostgreSQL/SQLite rows, a real HTTP receiver."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from structlog.testing import capture_logs

from sandbox_platform.core.context import bind_correlation_id
from sandbox_platform.core.errors import RetryExhausted
from sandbox_platform.db.engine import get_engine
from sandbox_platform.db.models import Base
from sandbox_platform.guards.retry import RetryBackoffManager
from sandbox_platform.ops.alerts import (
    AlertDispatcher,
    DatabaseSink,
    MemorySink,
    Severity,
    Throttle,
    WebhookSink,
    connect_retry_exhaustion,
)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(step)


# -- a real HTTP receiver --------------------------------------------------------------------


class Receiver:
    """Collects POSTed JSON bodies; can answer with given statuses, sleep, or hold on a gate."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bodies: list[dict[str, Any]] = []
        self.statuses: list[int] = []  # consumed in order; 200 once empty
        self.delay = 0.0
        self.gate: threading.Event | None = None
        self.started = threading.Event()  # first request arrived
        self.finished = threading.Event()  # first response written
        self.url = ""

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.bodies)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.bodies.append(json.loads(body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.started.set()
                if receiver.gate is not None:
                    receiver.gate.wait(10)
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                receiver.finished.set()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), rec.handler())
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook/SECRET-PATH"
    yield rec
    if rec.gate is not None:
        rec.gate.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def sinks() -> Iterator[list[WebhookSink]]:
    """Webhook sinks made in a test, closed after it."""
    made: list[WebhookSink] = []
    yield made
    for sink in made:
        sink.close(timeout=5)


# -- webhook ---------------------------------------------------------------------------------


@pytest.mark.parametrize("slack", [False, True])
def test_final_failure_posts_exactly_one_alert_with_correlation_id(
    receiver: Receiver, sinks: list[WebhookSink], slack: bool
) -> None:
    dispatcher = AlertDispatcher()
    webhook = WebhookSink(receiver.url, slack=slack)
    sinks.append(webhook)
    dispatcher.subscribe(webhook, min_severity=Severity.ERROR)
    manager = RetryBackoffManager(max_retries=3, sleep=lambda _s: None)
    connect_retry_exhaustion(dispatcher, manager.hooks)

    def charge() -> None:
        raise ConnectionError("card network down")

    with bind_correlation_id() as cid, pytest.raises(RetryExhausted):
        manager.execute_with_retry(charge, "billing.charge")
    assert webhook.flush(timeout=10)
    assert receiver.count == 1  # four attempts, three retries, one alert
    [body] = receiver.bodies
    if slack:
        assert body["text"].startswith("[ERROR] task_failed: billing.charge failed")
        fields = {f["title"]: f["value"] for f in body["attachments"][0]["fields"]}
        assert fields["correlation_id"] == cid
    else:
        assert body["kind"] == "task_failed"
        assert body["severity"] == "error"
        assert body["correlation_id"] == cid
        assert body["context"]["attempts"] == 4


def test_slow_receiver_does_not_block_emit(receiver: Receiver, sinks: list[WebhookSink]) -> None:
    receiver.delay = 2.0
    dispatcher = AlertDispatcher()
    webhook = WebhookSink(receiver.url, timeout=10)
    sinks.append(webhook)
    dispatcher.subscribe(webhook)

    assert dispatcher.alert("error", "first", "one")
    # A synchronous sink would only return after the receiver's 2 s response.
    assert not receiver.finished.is_set()
    assert receiver.started.wait(10)  # the first POST is now held by the slow receiver
    assert dispatcher.alert("error", "second", "two")
    # emit returned while the only delivery thread is stuck on the first POST: the second
    # request has not even reached the receiver yet.
    assert receiver.count == 1
    assert not receiver.finished.is_set()
    receiver.delay = 0.0  # the second request need not be slow too
    assert webhook.flush(timeout=15)
    assert [b["kind"] for b in receiver.bodies] == ["first", "second"]


def test_receiver_500_is_retried_with_backoff(receiver: Receiver, sinks: list[WebhookSink]) -> None:
    receiver.statuses = [500, 503]
    webhook = WebhookSink(receiver.url, base_delay=0.01, max_delay=0.05, max_retries=3)
    sinks.append(webhook)
    dispatcher = AlertDispatcher()
    dispatcher.subscribe(webhook)
    with capture_logs() as logs:
        dispatcher.alert("critical", "db_down", "primary lost", host="db1")
        assert webhook.flush(timeout=10)
    assert receiver.count == 3
    assert receiver.bodies[0] == receiver.bodies[2]  # the same alert, re-posted
    stats = webhook.stats()
    assert (stats["sent"], stats["failed"], stats["retries"]) == (1, 0, 2)
    retries = [e for e in logs if e["event"] == "alert_webhook_retry"]
    assert [e["attempt"] for e in retries] == [1, 2]
    assert all("SECRET-PATH" not in json.dumps(e, default=str) for e in logs)


def test_receiver_that_keeps_failing_is_given_up_after_max_retries(
    receiver: Receiver, sinks: list[WebhookSink]
) -> None:
    receiver.statuses = [500] * 10
    webhook = WebhookSink(receiver.url, base_delay=0.01, max_delay=0.02, max_retries=2)
    sinks.append(webhook)
    dispatcher = AlertDispatcher()
    dispatcher.subscribe(webhook)
    with capture_logs() as logs:
        dispatcher.alert("error", "x", "y")
        assert webhook.flush(timeout=10)
    assert receiver.count == 3
    assert webhook.stats()["failed"] == 1
    assert any(e["event"] == "alert_webhook_failed" for e in logs)


def test_client_error_is_not_retried(receiver: Receiver, sinks: list[WebhookSink]) -> None:
    receiver.statuses = [400]
    webhook = WebhookSink(receiver.url, base_delay=0.01)
    sinks.append(webhook)
    dispatcher = AlertDispatcher()
    dispatcher.subscribe(webhook)
    dispatcher.alert("error", "x", "y")
    assert webhook.flush(timeout=10)
    assert receiver.count == 1
    assert webhook.stats()["failed"] == 1


def test_full_queue_drops_with_counted_warning_and_never_blocks(
    receiver: Receiver, sinks: list[WebhookSink]
) -> None:
    receiver.gate = threading.Event()
    webhook = WebhookSink(receiver.url, queue_size=1, timeout=15)
    sinks.append(webhook)
    dispatcher = AlertDispatcher()
    dispatcher.subscribe(webhook)
    dispatcher.alert("error", "a", "in flight")
    assert receiver.started.wait(10)
    with capture_logs() as logs:
        dispatcher.alert("error", "b", "queued")
        dispatcher.alert("error", "c", "dropped")
        dispatcher.alert("error", "d", "dropped")
    drops = [e for e in logs if e["event"] == "alert_webhook_queue_full"]
    assert [e["dropped_total"] for e in drops] == [1, 2]
    assert all(e["log_level"] == "warning" for e in drops)
    receiver.gate.set()
    assert webhook.flush(timeout=10)
    assert [b["kind"] for b in receiver.bodies] == ["a", "b"]
    assert webhook.stats()["dropped"] == 2


def test_unreachable_webhook_gives_up_without_touching_the_caller(
    sinks: list[WebhookSink],
) -> None:
    webhook = WebhookSink("http://127.0.0.1:9/none", timeout=0.5, base_delay=0.01, max_retries=1)
    sinks.append(webhook)
    dispatcher = AlertDispatcher()
    dispatcher.subscribe(webhook)
    assert dispatcher.alert("error", "x", "y")
    assert webhook.flush(timeout=10)
    assert webhook.stats()["failed"] == 1


# -- throttling over Redis -------------------------------------------------------------------


def test_100_alerts_in_window_deliver_once_then_report_99_suppressed(
    redis_client: redis.Redis, receiver: Receiver, sinks: list[WebhookSink]
) -> None:
    throttle = Throttle(redis_client, window_seconds=1, prefix="sptest")
    dispatcher = AlertDispatcher(throttle=throttle)
    webhook = WebhookSink(receiver.url)
    sinks.append(webhook)
    dispatcher.subscribe(webhook)

    sent = [dispatcher.alert("error", "disk_full", "disk full", key="host-1") for _ in range(100)]
    assert sent.count(True) == 1
    assert sent[0] is True
    assert webhook.flush(timeout=10)
    assert receiver.count == 1
    assert receiver.bodies[0]["suppressed"] == 0

    gate, _counter = throttle.keys("disk_full", "host-1")
    wait_until(lambda: not redis_client.exists(gate), timeout=5)  # the window closed
    assert dispatcher.alert("error", "disk_full", "disk full", key="host-1")
    assert webhook.flush(timeout=10)
    assert receiver.count == 2
    assert receiver.bodies[1]["suppressed"] == 99


def test_throttle_holds_across_two_dispatchers_with_separate_clients(redis_url: str) -> None:
    clients = [redis.Redis.from_url(redis_url) for _ in range(2)]
    try:
        workers = [
            AlertDispatcher(throttle=Throttle(client, window_seconds=1, prefix="sptest"))
            for client in clients
        ]
        memories = [MemorySink(), MemorySink()]
        for dispatcher, memory in zip(workers, memories, strict=True):
            dispatcher.subscribe(memory)
        results: list[bool] = []
        lock = threading.Lock()
        start = threading.Barrier(4)

        def burst(dispatcher: AlertDispatcher) -> None:
            start.wait()
            for _ in range(25):
                ok = dispatcher.alert("warning", "queue_backlog", "deep", key="default")
                with lock:
                    results.append(ok)

        threads = [threading.Thread(target=burst, args=(workers[i % 2],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert len(results) == 100
        assert results.count(True) == 1
        assert sum(m.count() for m in memories) == 1

        gate, _ = workers[0].throttle.keys("queue_backlog", "default")
        wait_until(lambda: not clients[0].exists(gate), timeout=5)
        assert workers[1].alert("warning", "queue_backlog", "deep", key="default")
        assert memories[1].recent(1)[0].suppressed == 99
        # a different key is throttled independently
        assert workers[0].alert("warning", "queue_backlog", "deep", key="other")
    finally:
        for client in clients:
            client.close()


def test_throttle_falls_back_in_process_when_redis_is_unreachable() -> None:
    client = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    try:
        dispatcher = AlertDispatcher(throttle=Throttle(client, window_seconds=60))
        memory = MemorySink()
        dispatcher.subscribe(memory)
        with capture_logs() as logs:
            assert dispatcher.alert("error", "k", "m", key="a")  # never lost to an outage
            assert not dispatcher.alert("error", "k", "m", key="a")  # still damped locally
            assert dispatcher.alert("error", "k", "m", key="b")
        assert memory.count() == 2
        warnings = [e for e in logs if e["event"] == "alert_throttle_unavailable"]
        assert len(warnings) == 1  # Redis is not hammered once it is known down
        assert warnings[0]["log_level"] == "warning"
    finally:
        client.close()


# -- database sink ---------------------------------------------------------------------------


@pytest.fixture(params=["pg_url", "sqlite_url"])
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(request.param)
    Base.metadata.create_all(get_engine(url))
    return url


def test_database_sink_writes_rows(database_url: str, redis_client: redis.Redis) -> None:
    dispatcher = AlertDispatcher(throttle=Throttle(redis_client, window_seconds=1, prefix="spdb"))
    db = DatabaseSink(database_url)
    dispatcher.subscribe(db, min_severity="warning")
    with bind_correlation_id("cid-db"):
        dispatcher.alert("info", "ignored", "below min severity")
        dispatcher.alert("error", "charge_failed", "card declined", order=42, api_key="sk_live")
        for _ in range(5):
            dispatcher.alert("warning", "slow", "slow", key="q")
    gate, _ = dispatcher.throttle.keys("slow", "q")
    wait_until(lambda: not redis_client.exists(gate), timeout=5)
    dispatcher.alert("warning", "slow", "slow", key="q")

    assert db.count() == 3
    assert db.count(kind="slow") == 2
    newest, _slow, charge = db.recent(10)
    assert newest["kind"] == "slow"
    assert newest["suppressed"] == 4
    assert charge["kind"] == "charge_failed"
    assert charge["severity"] == "error"
    assert charge["correlation_id"] == "cid-db"
    assert charge["context"] == {"order": 42, "api_key": "***"}
