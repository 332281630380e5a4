"""Redis clients: one per process and URL, and the URL Celery needs for the same server.

A coordination URL ``redis+cluster://host:port[,host:port...]/`` (or ``rediss+cluster://``)
names a Redis Cluster: :func:`get_redis` then returns a redis-py ``RedisCluster`` (it follows
``MOVED``/``ASK`` redirects and routes each command and script by its keys' slot). It is typed
as ``redis.Redis`` because the platform uses only commands both clients share; code that must
act differently on a cluster asks :func:`is_cluster`. The broker is never a cluster (settings
refuse it): Celery's Redis transport does not support one.
"""

from __future__ import annotations

import atexit
import os
import threading
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException

from sandbox_platform.core.cluster_url import cluster_nodes, is_cluster_url
from sandbox_platform.core.embedded import (
    ensure_embedded_redis,
    register_user,
    release_embedded_redis,
    started_here,
)
from sandbox_platform.core.settings import Settings

__all__ = [
    "REDIS_ERRORS",
    "broker_redis",
    "celery_url",
    "cluster_client",
    "get_redis",
    "is_cluster",
    "is_cluster_url",
    "redis_url",
    "reset_clients",
    "text",
]

#: What an unreachable or failing coordination Redis raises: a cluster client's "no node
#: reachable" (``RedisClusterException``) is not a ``RedisError``.
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, RedisClusterException)


_lock = threading.Lock()
_clients: dict[str, redis.Redis] = {}


def redis_url(settings: Settings) -> str:
    """The configured Redis URL, or the embedded server's (started on first use)."""
    if settings.redis_url is not None:
        return settings.redis_url
    url = ensure_embedded_redis(settings.data_dir)
    _note_embedded_use(settings.data_dir)
    return url


_noted: set[tuple[int, Path]] = set()


def _note_embedded_use(data_dir: Path) -> None:
    """Once per process and ``data_dir``: note this process as a user of the embedded server
    and, when this process started it, stop it at exit or say it keeps running for the
    others (``release_embedded_redis``)."""
    me = os.getpid()
    if (me, data_dir) in _noted:
        return
    _noted.add((me, data_dir))
    register_user(data_dir)
    if started_here(data_dir):

        def release() -> None:
            if os.getpid() == me:  # a forked child inherits atexit hooks: not its server
                release_embedded_redis(data_dir)

        atexit.register(release)


def broker_redis(settings: Settings) -> redis.Redis:
    """The shared client of the broker's Redis (the coordination Redis unless set apart)."""
    return get_redis(settings.broker_url or redis_url(settings))


def text(value: object) -> str:
    """A Redis reply as text (replies are bytes unless the client decodes them)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def celery_url(url: str) -> str:
    """kombu spells a Unix-socket Redis ``redis+socket://``; redis-py spells it ``unix://``."""
    if url.startswith("unix://"):
        return "redis+socket://" + url.removeprefix("unix://")
    return url


def get_redis(url: str) -> redis.Redis:
    """The shared client of this process for ``url`` (thread-safe connection pool)."""
    if url.startswith("redis+socket://"):
        url = "unix://" + url.removeprefix("redis+socket://")
    client = _clients.get(url)
    if client is None:
        with _lock:
            client = _clients.get(url)
            if client is None:
                options: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 5}
                if is_cluster_url(url):
                    client = cluster_client(url, **options)
                else:
                    client = redis.Redis.from_url(url, health_check_interval=30, **options)
                _clients[url] = client
    return client


def is_cluster(client: object) -> bool:
    """True when ``client`` talks to a Redis Cluster (one script or MULTI: one slot)."""
    return isinstance(client, RedisCluster)


def cluster_client(url: str, **options: Any) -> redis.Redis:
    """A ``RedisCluster`` for a ``redis+cluster://`` URL: the listed nodes are where it starts
    (it discovers the others), credentials come from the URL. Typed ``redis.Redis``: see the
    module docstring."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    user, _, password = userinfo.partition(":")
    nodes = [ClusterNode(host, port) for host, port in cluster_nodes(url)]  # type: ignore[no-untyped-call]
    client = RedisCluster(
        startup_nodes=nodes,
        username=unquote(user) or None,
        password=unquote(password) or None,
        ssl=parts.scheme == "rediss+cluster",
        **options,
    )
    return cast(redis.Redis, client)


def reset_clients() -> None:
    """Drop every client (after fork, or in tests that restart Redis)."""
    global _lock
    _lock = threading.Lock()
    _clients.clear()


os.register_at_fork(after_in_child=reset_clients)
