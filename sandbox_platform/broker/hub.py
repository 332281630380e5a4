"""The worker's event loop: kombu's hub, except that it never sleeps while work is ready.

kombu's :class:`~kombu.asynchronous.hub.Hub` runs the callbacks queued with ``call_soon`` at
the top of each turn, then fires timers and waits in ``poll`` (epoll) for up to 10 s. A
``call_soon`` made *on the loop's own thread* does not wake the poller (kombu 5.7: "the loop
thread checks _ready before polling again"); that holds for callbacks queued while the loop
handles I/O events, but not for those queued by a ready callback itself: they wait in the
queue while the loop sleeps in ``poll``.

On RabbitMQ that stalls a solo worker with late acks and prefetch 1. The transport's reader
re-schedules itself with ``call_soon`` after each frame it reads; when RabbitMQ's next delivery
arrives by the time that re-scheduled read runs (it answers the previous ack within about a
millisecond), the job runs *inside* a ready callback, and Celery queues its ack with
``call_soon`` (``Consumer.call_soon_ack``). The loop then sleeps in ``poll`` with the ack
unsent; RabbitMQ sends nothing more until it gets it (prefetch 1), so the worker sits idle
with one delivery unacknowledged until a timer fires or another frame (a control command, a
heartbeat) wakes the poller: up to 10 s per stall. The same class of delay is reported
upstream (celery/celery#7718, celery/kombu#1587).

:class:`ReadyAwareHub` polls without blocking while callbacks are queued, as asyncio does: the
loop still collects I/O events, then comes back to run the queue. A worker of a platform app
uses it (:func:`use_ready_aware_hub`, from ``PlatformWorker``).
"""

from __future__ import annotations

from typing import Any

from kombu.asynchronous import get_event_loop
from kombu.asynchronous.hub import Hub

__all__ = ["ReadyAwareHub", "use_ready_aware_hub"]


class _ReadyAwarePoller:
    """A kombu poller whose ``poll`` does not block while ``hub`` has callbacks queued."""

    def __init__(self, poller: Any, hub: ReadyAwareHub) -> None:
        self._poller = poller
        self._hub = hub

    def poll(self, timeout: float | None) -> Any:
        if self._hub._ready:  # set by call_soon; a truthiness check needs no lock
            timeout = 0
        return self._poller.poll(timeout)

    def __getattr__(self, name: str) -> Any:  # register, unregister, close
        return getattr(self._poller, name)


class ReadyAwareHub(Hub):
    """kombu's hub whose ``poll`` returns at once while ``call_soon`` callbacks wait."""

    _ready: set[Any]  # kombu's queue of call_soon callbacks
    _poller: Any

    def _create_poller(self) -> None:
        super()._create_poller()
        self._poller = _ReadyAwarePoller(self._poller, self)


def use_ready_aware_hub(worker: Any) -> None:
    """Make the worker's Hub step build a :class:`ReadyAwareHub` (Celery's Hub step takes the
    hub class the connection names in ``requires_hub``). Nothing changes for a worker without
    an event loop, when an event loop is already set, or when the transport requires a hub
    of its own."""
    conninfo = getattr(worker, "_conninfo", None)
    if conninfo is None or not getattr(worker, "use_eventloop", False):
        return
    if get_event_loop() is not None or getattr(conninfo, "requires_hub", None) is not None:
        return
    conninfo.requires_hub = ReadyAwareHub
