"""Redis Cluster URLs: ``redis+cluster://[user:password@]host:port[,host:port...][/]``.

The coordination Redis may be a Redis Cluster (never the broker: Celery's Redis transport does
not support one). The URL lists the nodes a client starts from; it discovers the others.
``rediss+cluster://`` is the same over TLS. A cluster has one database, so a path other than
``/`` or ``/0`` is refused.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["CLUSTER_SCHEMES", "check_cluster_url", "cluster_nodes", "is_cluster_url"]

#: URL schemes of a Redis Cluster (coordination only)
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def is_cluster_url(url: str) -> bool:
    """True for ``redis+cluster://`` and ``rediss+cluster://`` URLs."""
    return url.partition("://")[0] in CLUSTER_SCHEMES


def cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The startup nodes a cluster URL lists; ValueError (one line) when malformed."""
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    nodes = []
    for item in netloc.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"malformed Redis Cluster URL: node {item.strip()!r} is not host:port")
        nodes.append((host.strip("[]"), int(port)))
    return nodes


def check_cluster_url(url: str) -> str:
    """``url`` if it is a well-formed cluster URL; ValueError (one line) otherwise."""
    cluster_nodes(url)
    if urlsplit(url).path.strip("/") not in ("", "0"):
        raise ValueError("malformed Redis Cluster URL: a cluster has only database 0")
    return url
