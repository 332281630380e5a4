"""The worker's event loop runs a callback that a ready callback queued without first sleeping
in ``poll`` (broker/hub.py: the stall of a RabbitMQ worker between jobs)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from kombu.asynchronous import get_event_loop, set_event_loop

from sandbox_platform.broker.hub import ReadyAwareHub, use_ready_aware_hub


@pytest.fixture
def hub() -> Iterator[ReadyAwareHub]:
    made = ReadyAwareHub()
    reader, writer = socket.socketpair()
    made.add_reader(reader, lambda: None)  # a reader, so the loop polls (as a worker's does)
    yield made
    made.close()
    reader.close()
    writer.close()


def test_a_callback_queued_by_a_ready_callback_runs_without_a_long_poll(
    hub: ReadyAwareHub,
) -> None:
    ran: list[str] = []
    acked: list[float] = []

    def ack() -> None:  # what Celery queues after a job that ran inside a ready callback
        ran.append("ack")
        acked.append(time.monotonic())

    def read_and_run_job() -> None:
        ran.append("job")
        hub.call_soon(ack)  # on the loop's own thread: no wake-up of the poller

    hub.call_later(60, lambda: None)  # a far timer: kombu's hub then polls for up to 10 s
    hub.call_soon(read_and_run_job)
    loop = hub.create_loop()
    started = time.monotonic()
    while "ack" not in ran and time.monotonic() - started < 15:
        next(loop)
    assert ran == ["job", "ack"]
    assert (
        acked[0] - started < 0.5
    )  # kombu's own hub sleeps in poll first (2 s here, 10 in a worker)


def test_an_idle_loop_still_sleeps_in_poll(hub: ReadyAwareHub) -> None:
    hub.call_later(0.7, lambda: None)
    loop = hub.create_loop()
    started = time.monotonic()
    next(loop)
    assert time.monotonic() - started >= 0.5  # nothing queued: a blocking poll, no spinning


def test_the_worker_gets_the_hub_only_when_it_builds_an_event_loop() -> None:
    conninfo = SimpleNamespace()
    use_ready_aware_hub(SimpleNamespace(_conninfo=conninfo, use_eventloop=True))
    assert conninfo.requires_hub is ReadyAwareHub

    without_loop = SimpleNamespace()
    use_ready_aware_hub(SimpleNamespace(_conninfo=without_loop, use_eventloop=False))
    assert not hasattr(without_loop, "requires_hub")

    own = SimpleNamespace(requires_hub=object)
    use_ready_aware_hub(SimpleNamespace(_conninfo=own, use_eventloop=True))
    assert own.requires_hub is object  # a transport's own hub is kept

    previous = get_event_loop()
    set_event_loop(ReadyAwareHub())
    try:
        already = SimpleNamespace()
        use_ready_aware_hub(SimpleNamespace(_conninfo=already, use_eventloop=True))
        assert not hasattr(already, "requires_hub")  # Celery uses the loop already set
    finally:
        loop = get_event_loop()
        set_event_loop(previous)
        if loop is not None:
            loop.close()
