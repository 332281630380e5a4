"""The egress guard: in sandbox mode, task code reaches only the platform's own services.

A dry-run decorator guards only the functions someone marked. In sandbox mode a worker also
installs this guard, which watches every connection *task code* opens (the job's thread, and
the threads and processes it starts): one to an address not on the allow-list is blocked
(``block``, the default: :class:`~sandbox_platform.core.errors.SandboxEgressBlocked`) or let
through (``record``), and recorded as a dry-run event (action ``egress``) with the
destination, task id and correlation id. ``off`` disables it; it never runs in live mode.

The allow-list: the platform's Redis, broker and result backend, the sandbox database, the
alert webhook, and ``SANDBOX_PLATFORM_EGRESS_ALLOW`` (``host:port`` patterns, ``*`` allowed).
The live database is not on it: a sandbox task that connects to it is blocked, even on the
same server as the sandbox database.

What it sees: Python sockets (``socket.connect``/``sendto`` audit events: HTTP clients,
``smtplib``, redis-py, ...), psycopg connections (libpq connects in C, so ``psycopg.connect``
is wrapped) and ``sqlite3.connect``. What it cannot see: C extensions that open their own
sockets (other database drivers, gRPC, ...), and other programs task code runs. Unix sockets
are local and always allowed. The platform's own threads carry no job context and are never
blocked.
"""

from __future__ import annotations

import contextlib
import fnmatch
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sandbox_platform.core.cluster_url import cluster_nodes, is_cluster_url
from sandbox_platform.core.errors import SandboxEgressBlocked
from sandbox_platform.core.jobscope import current_job
from sandbox_platform.core.settings import Mode, Settings, database_identity
from sandbox_platform.guards.dry_run import DryRunLock

__all__ = ["EgressPolicy", "install_egress_guard", "policy_from"]

_DEFAULT_PORTS = {
    "http": 80,
    "https": 443,
    "redis": 6379,
    "rediss": 6379,
    "amqp": 5672,
    "pyamqp": 5672,
    "amqps": 5671,
    "postgresql": 5432,
}
_LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class EgressPolicy:
    """What task code may connect to. ``allowed`` holds ``(host pattern, port pattern)``."""

    mode: str
    allowed: tuple[tuple[str, str], ...]
    live_database: tuple[str, ...] | None = None

    def allows(self, host: str, port: int | None) -> bool:
        host = host.lower().strip("[]")
        return any(
            fnmatch.fnmatchcase(host, host_glob) and fnmatch.fnmatchcase(str(port), port_glob)
            for host_glob, port_glob in self.allowed
        )


def _names(host: str) -> set[str]:
    """``host`` and the addresses it resolves to now (loopback names are one)."""
    names = {host.lower()}
    if host.lower() in _LOCAL_NAMES:
        names.update(_LOCAL_NAMES)
    with contextlib.suppress(OSError):
        names.update(str(info[4][0]) for info in socket.getaddrinfo(host, None))
    return names


def _entries(url: str | None) -> list[tuple[str, str]]:
    if not url or url == "redis":
        return []
    if is_cluster_url(url):  # the nodes the URL lists (list every node: see docs/scaling.md)
        with contextlib.suppress(ValueError):
            return [(n, str(port)) for host, port in cluster_nodes(url) for n in _names(host)]
        return []
    parts = urlsplit(url)
    if not parts.hostname:  # unix sockets, SQLite files: local
        return []
    scheme = parts.scheme.split("+", 1)[0]
    known = _DEFAULT_PORTS.get(scheme)
    port = str(parts.port or known) if (parts.port or known) else "*"
    return [(name, port) for name in _names(parts.hostname)]


def _patterns(text: str | None) -> list[tuple[str, str]]:
    out = []
    for item in (text or "").split(","):
        item = item.strip()
        if item:
            host, _, port = item.rpartition(":") if ":" in item else (item, "", "*")
            for name in _names(host) if "*" not in host else {host.lower()}:
                out.append((name, port or "*"))
    return out


def policy_from(settings: Settings) -> EgressPolicy:
    """The allow-list of ``settings``: the platform's services plus EGRESS_ALLOW."""
    urls: Iterable[str | None] = (
        settings.redis_url,
        settings.broker_url,
        settings.result_backend,
        settings.sandbox_database_url,
        settings.alert_webhook_url,
    )
    allowed = [entry for url in urls for entry in _entries(url)]
    allowed += _patterns(settings.egress_allow)
    live = database_identity(settings.live_database_url) if settings.live_database_url else None
    return EgressPolicy(settings.egress_mode, tuple(allowed), live)


# -- the hook ------------------------------------------------------------------------------------


@dataclass
class _Guard:
    policy: EgressPolicy
    lock: Callable[[], DryRunLock]


_guard: _Guard | None = None
_busy = threading.local()  # set while the guard records (its own database connection)


def _check(destination: str, how: str, allowed: bool) -> None:
    """Block or record a connection of task code, if it is not allowed."""
    guard = _guard
    if allowed or guard is None or getattr(_busy, "on", False) or current_job() is None:
        return
    block = guard.policy.mode == "block"
    _busy.on = True
    try:
        guard.lock().record_egress(destination, how, blocked=block)
    finally:
        _busy.on = False
    if block:
        raise SandboxEgressBlocked(destination, how)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event not in ("socket.connect", "socket.sendto", "sqlite3.connect"):
        return
    guard = _guard
    if guard is None or guard.policy.mode == "off" or getattr(_busy, "on", False):
        return
    if event == "sqlite3.connect":
        _check_sqlite(guard.policy, args[0])
        return
    address = args[1] if len(args) > 1 else None
    if not isinstance(address, tuple) or len(address) < 2:
        return  # a Unix socket (a path): local
    host, port = str(address[0]), int(address[1])
    _check(f"{host}:{port}", event.split(".", 1)[1], guard.policy.allows(host, port))


def _check_sqlite(policy: EgressPolicy, database: Any) -> None:
    if policy.live_database is None or not isinstance(database, str | bytes):
        return
    path = database.decode() if isinstance(database, bytes) else database
    if path.startswith("file:") or path == ":memory:":
        return
    identity = database_identity(f"sqlite:///{path}")
    _check(f"sqlite:{path}", "connect", identity != policy.live_database)


def _psycopg_allowed(
    policy: EgressPolicy, conninfo: str, kwargs: dict[str, Any]
) -> tuple[str, bool]:
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(conninfo, **kwargs)
    host = str(params.get("host") or "localhost")
    port = int(params.get("port") or 5432)
    url = f"postgresql://{host}:{port}/{params.get('dbname') or ''}"
    if policy.live_database is not None and database_identity(url) == policy.live_database:
        return f"{host}:{port}/{params.get('dbname')} (the live database)", False
    return f"{host}:{port}", host.startswith("/") or policy.allows(host, port)


def _wrap_psycopg() -> None:
    """libpq connects in C: wrap ``psycopg.connect`` so its connections are checked too."""
    try:
        import psycopg
    except ImportError:
        return
    original = psycopg.Connection.connect.__func__  # type: ignore[attr-defined]

    def connect(cls: Any, conninfo: str = "", **kwargs: Any) -> Any:
        guard = _guard
        if guard is not None and guard.policy.mode != "off":
            destination, allowed = _psycopg_allowed(guard.policy, conninfo, kwargs)
            _check(destination, "connect", allowed)
        return original(cls, conninfo, **kwargs)

    psycopg.Connection.connect = classmethod(connect)  # type: ignore[assignment,method-assign,arg-type]
    psycopg.connect = psycopg.Connection.connect


def install_egress_guard(settings: Settings, lock: Callable[[], DryRunLock]) -> bool:
    """Install the guard in this process (sandbox mode only; once); True when it is on.

    ``lock`` gives the dry-run lock that records what the guard sees. Calling it again
    replaces the policy (an audit hook cannot be removed; ``off`` makes it inert).
    """
    global _guard
    if settings.mode is not Mode.SANDBOX or settings.egress_mode == "off":
        if _guard is not None:
            _guard = _Guard(EgressPolicy("off", ()), lock)
        return False
    first = _guard is None
    _guard = _Guard(policy_from(settings), lock)
    if first:
        sys.addaudithook(_audit)
        _wrap_psycopg()
    return True
