"""The typed view of what the Redis transport needs from kombu's channel: one Protocol for the
channel (its public attributes and the private members on
:data:`~sandbox_platform.broker.private_api.PRIVATE_API`), and one for the transport and the
helpers it reaches through them.

:class:`~sandbox_platform.broker.transport.Channel` subclasses kombu's Redis channel, whose
source has no type hints; :func:`internals` gives the subclass a typed handle on itself, so
mypy checks every use of kombu's members against the signatures below. A kombu release that
changes one of them is caught here and by the version range in pyproject.toml
(:mod:`sandbox_platform.broker.versions`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, cast

import redis

__all__ = [
    "KombuTransportInternals",
    "PollingClient",
    "QueueCycle",
    "RedisChannelInternals",
    "internals",
]


class QueueCycle(Protocol):
    """kombu's round robin over the channel's queues (``FairCycle``/``round_robin_cycle``)."""

    def consume(self, n: int) -> Sequence[str]: ...

    def rotate(self, last_used: str) -> None: ...


class PollingClient(Protocol):
    """The channel's polling client: one connection, replies read after the poller says so."""

    connection: Any  # redis-py Connection (send_command, disconnect)

    def parse_response(self, connection: Any, command_name: str, **options: Any) -> Any: ...


class KombuTransportInternals(Protocol):
    """The kombu transport a channel belongs to (``channel.connection``)."""

    def _deliver(self, message: dict[str, Any], queue: str) -> None: ...


class ChannelQoS(Protocol):
    def can_consume_max_estimate(self) -> int | None: ...


class RedisChannelInternals(Protocol):
    """``kombu.transport.redis.Channel`` as the platform's channel uses it."""

    active_queues: set[str]
    brpop_timeout: float
    client: PollingClient
    connection: KombuTransportInternals
    connection_errors: tuple[type[BaseException], ...]
    global_keyprefix: str
    priority_steps: Sequence[int]
    qos: ChannelQoS
    sep: str
    unacked_key: str
    unacked_index_key: str
    # private members (PRIVATE_API)
    _in_poll: Any
    _brpop_sent_at: float
    _queue_cycle: QueueCycle
    _expires: Mapping[str, Any]

    def _create_client(self, asynchronous: bool = False) -> redis.Redis: ...

    def _q_for_pri(self, queue: str, pri: int) -> str: ...

    def _get_message_priority(self, message: Mapping[str, Any], reverse: bool = False) -> int: ...


def internals(channel: object) -> RedisChannelInternals:
    """``channel`` (a subclass of kombu's Redis channel) seen through the Protocol."""
    return cast(RedisChannelInternals, channel)
