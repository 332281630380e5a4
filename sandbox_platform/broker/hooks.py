"""The hand-over between one app's guards and the platform's transport: one object per app.

The coordination work a guard folds into the broker's fetch, acknowledgement and publish
meets the transport here, explicitly, instead of through module registries or thread-locals:

- ``create_app`` builds one :class:`BrokerHooks` per app and hands it to the transport in the
  transport option ``sandbox_platform_hooks`` (:data:`HOOKS_OPTION`), and to the guards in
  their services (``Services.broker``);
- every channel the transport opens for that app's connections asks it for its own
  :class:`~sandbox_platform.broker.ack_riders.Deliveries` (:meth:`BrokerHooks.for_channel`);
- a guard lets a completion or a run record ride with its job's acknowledgement
  (:meth:`attach`, :meth:`attach_record`: the channel that delivered the job takes it).

(What a publish answers for work folded into it needs no hooks: the answer object travels in
the message's header to ``_put``, :class:`~sandbox_platform.broker.publish_once.PublishAnswer`.)

It travels in the connection's transport options, which a worker's ``inspect stats`` reply
carries: in JSON it is its repr. Thread-safe (a threads worker's jobs attach at once) and
fork-safe (a forked child attaches
nothing to a delivery its parent opened; its own channels are new). Two apps in one process
have two hook objects: one app's guard never reaches the other's channels.
"""

from __future__ import annotations

import threading
import weakref

from sandbox_platform.broker.ack_riders import Completion, Deliveries

__all__ = ["HOOKS_OPTION", "BrokerHooks"]

#: the transport option that carries an app's hooks to its channels
HOOKS_OPTION = "sandbox_platform_hooks"


class BrokerHooks:
    """One app's side of the transport (see the module)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._channels: weakref.WeakSet[Deliveries] = weakref.WeakSet()

    def __json__(self) -> str:
        """What a JSON reply shows for it: a worker's ``inspect stats`` carries its
        connection's transport options, and kombu's encoder asks for this."""
        return repr(self)

    def __repr__(self) -> str:
        with self._lock:
            channels = len(self._channels)
        return f"<BrokerHooks: {channels} channel(s)>"

    def for_channel(self) -> Deliveries:
        """The deliveries of a new channel (the channel keeps it; it leaves with it)."""
        deliveries = Deliveries()
        with self._lock:
            self._channels.add(deliveries)
        return deliveries

    def attach(self, tag: str | None, completion: Completion) -> bool:
        """Let ``completion`` ride with the acknowledgement of delivery ``tag``; False when
        none of the app's channels in this process holds ``tag`` open."""
        return any(deliveries.attach(tag, completion) for deliveries in self._open_channels(tag))

    def attach_record(self, tag: str | None, outbox: str, record: str) -> bool:
        """Let run record ``record`` ride with the acknowledgement of ``tag`` (onto ``outbox``)."""
        return any(
            deliveries.attach_record(tag, outbox, record) for deliveries in self._open_channels(tag)
        )

    def _open_channels(self, tag: str | None) -> list[Deliveries]:
        if not tag:
            return []
        with self._lock:
            return list(self._channels)
