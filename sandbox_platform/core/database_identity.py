"""What identifies a database, whatever URL names it: sandbox and live must never share one
(``Settings.isolated``), however differently their URLs are written."""

from __future__ import annotations

import ipaddress
import socket
import uuid
from pathlib import Path
from types import MappingProxyType

from sqlalchemy.engine import URL, make_url

__all__ = ["database_identity"]

_DEFAULT_PORTS = MappingProxyType({"postgresql": 5432, "mysql": 3306, "mariadb": 3306})
#: host names that are loopback without a lookup ("" is a socket path or no host)
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]", ""})


def _is_this_machine(host: str) -> bool:
    """Loopback addresses (all of 127.0.0.0/8, ::1) and this machine's own names."""
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    return host in names or host.split(".", 1)[0] in {n.split(".", 1)[0] for n in names}


def database_identity(url_text: str) -> tuple[str, ...]:
    """Normalise a database URL to what identifies the database itself.

    Driver, user, password and query are dropped; loopback addresses (127.0.0.0/8, ::1) and
    this machine's own host names are one host; the default port is filled in; SQLite paths
    are made absolute. ``:memory:`` is unique.
    """
    url: URL = make_url(url_text)
    backend = url.get_backend_name()
    if backend == "sqlite":
        database = url.database or ":memory:"
        if database == ":memory:" or database.startswith("file::memory:"):
            return ("sqlite", ":memory:", uuid.uuid4().hex)  # each one is its own database
        return ("sqlite", str(Path(database).expanduser().resolve()))
    host = (url.host or "localhost").lower()
    if _is_this_machine(host):
        host = "loopback"
    port = url.port or _DEFAULT_PORTS.get(backend, 0)
    return (backend, host, str(port), url.database or "")
