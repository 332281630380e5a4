"""Which broker a URL names: Redis (the default) or RabbitMQ, and a one-line check of it.

The coordination Redis (governor, idempotency, heartbeat) is always Redis; the broker may be
either. Everything that differs between the two is chosen by :func:`broker_kind`.
"""

from __future__ import annotations

from enum import StrEnum
from urllib.parse import urlsplit

__all__ = [
    "AMQP_SCHEMES",
    "REDIS_SCHEMES",
    "BrokerKind",
    "broker_kind",
    "check_amqp_url",
    "check_broker_url",
    "check_redis_url",
]

REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+socket")
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")


class BrokerKind(StrEnum):
    REDIS = "redis"
    RABBITMQ = "rabbitmq"


def _scheme(url: str) -> str:
    return url.partition("://")[0].lower()


def broker_kind(url: str) -> BrokerKind:
    """RabbitMQ for ``amqp://``, ``amqps://`` and ``pyamqp://`` URLs, Redis otherwise."""
    return BrokerKind.RABBITMQ if _scheme(url) in AMQP_SCHEMES else BrokerKind.REDIS


def _check_port(url: str, what: str) -> None:
    try:
        port = urlsplit(url).port
    except ValueError:
        raise ValueError(f"malformed {what} URL: the port is not a number in 1-65535") from None
    if port == 0:
        raise ValueError(f"malformed {what} URL: the port is not a number in 1-65535")


def check_redis_url(value: str) -> str:
    """A Redis URL whose port and db number are numbers in range, else one clear line."""
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in REDIS_SCHEMES or not rest:
        raise ValueError(f"malformed Redis URL (expected {'/'.join(REDIS_SCHEMES)}://...)")
    if scheme in ("redis", "rediss"):
        _check_port(value, "Redis")
        db = urlsplit(value).path.strip("/")
        if db and not (db.isdigit() and int(db) < 1 << 16):
            raise ValueError(f"malformed Redis URL: the database {db!r} is not a number")
    return value


def check_amqp_url(value: str) -> str:
    """A RabbitMQ URL with a host and a port in range, else one clear line."""
    _check_port(value, "RabbitMQ")
    if not urlsplit(value).hostname:
        raise ValueError(
            "malformed RabbitMQ URL: no host (expected amqp://user:pass@host:5672/vhost)"
        )
    return value


def check_broker_url(value: str) -> str:
    """A broker URL the platform runs on: Redis or RabbitMQ, else one clear line."""
    scheme, sep, rest = value.partition("://")
    if sep and scheme.lower() in AMQP_SCHEMES and rest:
        return check_amqp_url(value)
    if sep and scheme in REDIS_SCHEMES:
        return check_redis_url(value)
    schemes = "/".join((*REDIS_SCHEMES, *AMQP_SCHEMES))
    shown = f"{scheme!r}" if sep else "no scheme"
    raise ValueError(f"unsupported broker URL ({shown}; expected one of {schemes}://...)")
