"""The platform's Redis transport for kombu: a subclass of kombu's, installed by
``create_app`` for ``redis://`` and ``rediss://`` brokers (``broker_transport``; no new URL
scheme).

What it changes: an element of a queue's list that is not a kombu message at all (raw bytes,
not JSON) no longer kills the consumer and vanishes. kombu pops it (``BRPOP``) and then fails
to decode it; this transport hands the raw bytes to the app's handler (which stores a dead
letter, reason ``undecodable``) and keeps consuming. If the handler fails too, the bytes are
pushed to the list ``<queue>.malformed`` so nothing is lost.

The handler is the worker's, registered for the process by its consumer
(:func:`set_malformed_handler`); it is not a transport option, because a worker reports its
transport options in ``inspect stats`` as JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from queue import Empty
from typing import Any

import structlog
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

__all__ = ["Channel", "Transport", "set_malformed_handler"]

log = structlog.get_logger(__name__)

#: the handler of undecodable elements: (queue, raw, error)
MalformedHandler = Callable[[str, bytes, BaseException], None]
_handler: list[MalformedHandler] = []


def set_malformed_handler(handler: MalformedHandler | None) -> None:
    """Set (or with None, clear) this process's handler of undecodable queue elements."""
    _handler[:] = [handler] if handler is not None else []


class Channel(kombu_redis.Channel):
    def _brpop_read(self, **options: Any) -> bool:
        chan: Any = self  # kombu's channel attributes are not typed
        try:
            try:
                dest__item = chan.client.parse_response(chan.client.connection, "BRPOP", **options)
            except chan.connection_errors:
                chan.client.connection.disconnect()
                raise
            if not dest__item:
                raise Empty()
            dest, item = dest__item
            dest = bytes_to_str(dest).rsplit(chan.sep, 1)[0]
            chan._queue_cycle.rotate(dest)
            try:
                payload = loads(bytes_to_str(item))
            except (ValueError, TypeError) as exc:
                self._on_malformed(dest, item, exc)
                return True
            chan.connection._deliver(payload, dest)
            return True
        finally:
            chan._in_poll = None
            flush = getattr(chan, "_flush_brpop_reauth", None)
            if flush is not None:
                flush()

    def _on_malformed(self, queue: str, raw: Any, error: BaseException) -> None:
        data = raw if isinstance(raw, bytes) else str(raw).encode()
        try:
            if not _handler:
                raise RuntimeError("no handler for undecodable messages")
            _handler[0](queue, data, error)
        except Exception:
            log.exception(
                "an undecodable message could not be dead-lettered; kept aside", queue=queue
            )
            with self.conn_or_acquire() as client:
                client.lpush(f"{queue}.malformed", data)


class Transport(kombu_redis.Transport):
    Channel = Channel
