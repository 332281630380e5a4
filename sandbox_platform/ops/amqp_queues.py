"""Queue lengths on a RabbitMQ broker: what ``LLEN`` is on Redis.

A passive ``queue_declare`` answers with the queue's ``message_count``: the messages ready to
be delivered (not those a worker holds unacknowledged, as on Redis, where a fetched message
leaves the list). It changes nothing on the broker; a queue nobody declared yet holds 0 jobs.
AMQP cannot read a message without taking it, so the age of the oldest job is not known.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from amqp.exceptions import NotFound
from kombu import Connection

__all__ = ["AmqpQueues"]


class AmqpQueues:
    """The broker side of queue statistics for a RabbitMQ broker URL."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout

    def lengths(self, queues: Iterable[str]) -> dict[str, int]:
        """Ready messages per queue, over one connection (0 for a queue not declared)."""
        out: dict[str, int] = {}
        with Connection(self.url, connect_timeout=self.timeout) as conn:
            channel: Any = conn.channel()  # py-amqp's Channel (the stub knows less)
            try:
                for queue in queues:
                    try:
                        _, count, _ = channel.queue_declare(queue=queue, passive=True)
                    except NotFound:  # the broker closed the channel: open another
                        channel = conn.channel()
                        count = 0
                    out[queue] = int(count)
            finally:
                channel.close()
        return out

    def length(self, queue: str) -> int:
        return self.lengths([queue])[queue]
