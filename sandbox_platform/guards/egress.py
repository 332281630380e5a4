"""The egress guard: in a sandbox worker, nothing reaches a host off the allow-list.

A dry-run decorator guards only the functions someone marked. A sandbox worker process also
installs this guard when it starts (``worker_init``): from then on every connection opened
in the process, on any thread, inside a job or not, is checked; one to an address not on the
allow-list is blocked (``block``, the default:
:class:`~sandbox_platform.core.errors.SandboxEgressBlocked`) or let through (``record``), and
recorded as a dry-run event (action ``egress``) with the destination, and the task id and
correlation id when a job made it. ``off`` disables it; it never runs in live mode, nor in
producer processes (a web app enqueuing sandbox jobs is not restricted).

Connections opened before the guard was installed (a keep-alive client warmed at import) are
found when it is installed: every open TCP socket of the process is looked at, and one
connected to an off-list host is shut down (``shutdown()``, so the descriptor is not freed
for reuse under a library that still holds it; ``record``: left open) and recorded. A client
that reuses it finds it closed and connects again, which the hook checks.

Whose allow-list: inside a job, the job's own app's (``Services.egress``: None for a live
app, whose jobs are never restricted); outside any job, the worker's app's. It holds the
platform's Redis, broker and result backend, the sandbox database, the alert webhook, the
OTLP endpoint when tracing is on, and ``SANDBOX_PLATFORM_EGRESS_ALLOW`` (``host:port``
patterns, ``*`` allowed). The live database is not on it: a sandbox task that connects to it
is blocked, even on the same server as the sandbox database.

What it sees: Python sockets (``socket.connect``/``sendto`` audit events: HTTP clients,
``smtplib``, redis-py, ...), psycopg connections (libpq connects in C, so ``psycopg.connect``
is wrapped) and ``sqlite3.connect``. What it cannot see: C extensions that open their own
sockets (other database drivers, gRPC, ...), and other programs task code runs. Unix sockets
are local and always allowed.
"""

from __future__ import annotations

import contextlib
import fnmatch
import gc
import os
import socket
import sys
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from sandbox_platform.core.cluster_url import cluster_nodes, is_cluster_url
from sandbox_platform.core.errors import SandboxEgressBlocked
from sandbox_platform.core.jobscope import current_job
from sandbox_platform.core.settings import Mode, Settings, database_identity
from sandbox_platform.guards.dry_run import DryRunLock

__all__ = [
    "EgressGuard",
    "EgressPolicy",
    "install_egress_guard",
    "job_policy",
    "otlp_endpoint",
    "policy_from",
]

_DEFAULT_PORTS = MappingProxyType(
    {
        "http": 80,
        "https": 443,
        "redis": 6379,
        "rediss": 6379,
        "amqp": 5672,
        "pyamqp": 5672,
        "amqps": 5671,
        "postgresql": 5432,
    }
)
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


#: OpenTelemetry's own default endpoint (OTLP over HTTP)
_OTLP_DEFAULT = "http://localhost:4318"


def otlp_endpoint() -> str:
    """Where the span exporter sends (OpenTelemetry's standard variables)."""
    return (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or _OTLP_DEFAULT
    )


def policy_from(settings: Settings) -> EgressPolicy:
    """The allow-list of ``settings``: the platform's services plus EGRESS_ALLOW."""
    urls: Iterable[str | None] = (
        settings.redis_url,
        settings.broker_url,
        settings.result_backend,
        settings.sandbox_database_url,
        settings.alert_webhook_url,
        otlp_endpoint() if settings.otel else None,
    )
    allowed = [entry for url in urls for entry in _entries(url)]
    allowed += _patterns(settings.egress_allow)
    live = database_identity(settings.live_database_url) if settings.live_database_url else None
    return EgressPolicy(settings.egress_mode, tuple(allowed), live)


def job_policy(settings: Settings) -> EgressPolicy | None:
    """The policy a job of an app with ``settings`` is held to: None (unrestricted) in live
    mode or with the guard off."""
    if settings.mode is not Mode.SANDBOX or settings.egress_mode == "off":
        return None
    return policy_from(settings)


# -- the hook ------------------------------------------------------------------------------------

#: set while the guard records (the recording may open its own database connection)
_recording: ContextVar[bool] = ContextVar("sp_egress_recording", default=False)
_WATCHED = frozenset({"socket.connect", "socket.sendto", "sqlite3.connect"})


@dataclass
class _Decision:
    policy: EgressPolicy
    lock: Callable[[], DryRunLock]


class EgressGuard:
    """The audit hook of one worker process, with the worker app's policy and lock (used
    outside any job). ``policy`` may be replaced (``off`` makes the guard inert: an audit
    hook cannot be removed)."""

    def __init__(self, policy: EgressPolicy, lock: Callable[[], DryRunLock]) -> None:
        self.policy = policy
        self.lock = lock

    def disable(self) -> None:
        self.policy = EgressPolicy("off", ())

    def _decision(self) -> _Decision | None:
        """The policy and lock of the code running now; None when nothing is checked."""
        if self.policy.mode == "off" or _recording.get():
            return None
        job = current_job()
        services = job.services if job is not None else None
        if services is None:  # outside a job (or a spawned child's job): the worker's
            return _Decision(self.policy, self.lock)
        policy: EgressPolicy | None = getattr(services, "egress", None)
        if policy is None or policy.mode == "off":
            return None  # a live app's job
        return _Decision(policy, lambda: services.dry_run_lock)

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        if event not in _WATCHED:
            return
        decision = self._decision()
        if decision is None:
            return
        if event == "sqlite3.connect":
            _check_sqlite(decision, args[0])
            return
        address = args[1] if len(args) > 1 else None
        if not isinstance(address, tuple) or len(address) < 2:
            return  # a Unix socket (a path): local
        host, port = str(address[0]), int(address[1])
        how = event.split(".", 1)[1]
        _check(decision, f"{host}:{port}", how, decision.policy.allows(host, port))

    def check_psycopg(self, conninfo: str, kwargs: dict[str, Any]) -> None:
        decision = self._decision()
        if decision is not None:
            destination, allowed = _psycopg_allowed(decision.policy, conninfo, kwargs)
            _check(decision, destination, "connect", allowed)

    def close_open_connections(self) -> int:
        """Shut down (``block``) or just record (``record``) every TCP connection of this
        process to a host off the allow-list; how many were found."""
        if self.policy.mode == "off":
            return 0
        found = 0
        for sock, (host, port) in _open_connections():
            if self.policy.allows(host, port):
                continue
            found += 1
            block = self.policy.mode == "block"
            if block:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            _record(_Decision(self.policy, self.lock), f"{host}:{port}", "open", block)
        return found


def _open_connections() -> Iterator[tuple[socket.socket, tuple[str, int]]]:
    """Every TCP socket object of this process connected *out*, with its peer (a connection
    a listening socket of this process accepted is not egress)."""
    tcp = [
        obj
        for obj in gc.get_objects()
        if isinstance(obj, socket.socket)
        and obj.fileno() >= 0
        and obj.family in (socket.AF_INET, socket.AF_INET6)
        and obj.type == socket.SOCK_STREAM
    ]
    connected: list[tuple[socket.socket, tuple[str, int]]] = []
    listening: set[int] = set()
    for sock in tcp:
        try:
            peer = sock.getpeername()
        except OSError:  # listening, or not connected
            with contextlib.suppress(OSError):
                listening.add(int(sock.getsockname()[1]))
            continue
        connected.append((sock, (str(peer[0]), int(peer[1]))))
    for sock, peer in connected:
        try:
            local_port = int(sock.getsockname()[1])
        except OSError:
            continue
        if local_port not in listening:  # else accepted by a server of this process
            yield sock, peer


def _record(decision: _Decision, destination: str, how: str, blocked: bool) -> None:
    token = _recording.set(True)
    try:
        decision.lock().record_egress(destination, how, blocked=blocked)
    finally:
        _recording.reset(token)


def _check(decision: _Decision, destination: str, how: str, allowed: bool) -> None:
    """Block or record a connection that is not allowed."""
    if allowed:
        return
    block = decision.policy.mode == "block"
    _record(decision, destination, how, block)
    if block:
        raise SandboxEgressBlocked(destination, how)


def _check_sqlite(decision: _Decision, database: Any) -> None:
    policy = decision.policy
    if policy.live_database is None or not isinstance(database, str | bytes):
        return
    path = database.decode() if isinstance(database, bytes) else database
    if path.startswith("file:") or path == ":memory:":
        return
    identity = database_identity(f"sqlite:///{path}")
    _check(decision, f"sqlite:{path}", "connect", identity != policy.live_database)


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


def _wrap_psycopg(guard: EgressGuard) -> None:
    """libpq connects in C: wrap ``psycopg.connect`` so its connections are checked too."""
    try:
        import psycopg
    except ImportError:
        return
    original = psycopg.Connection.connect.__func__  # type: ignore[attr-defined]

    def connect(cls: Any, conninfo: str = "", **kwargs: Any) -> Any:
        guard.check_psycopg(conninfo, kwargs)
        return original(cls, conninfo, **kwargs)

    psycopg.Connection.connect = classmethod(connect)  # type: ignore[assignment,method-assign,arg-type]
    psycopg.connect = psycopg.Connection.connect


def install_egress_guard(
    settings: Settings, lock: Callable[[], DryRunLock], installed: EgressGuard | None = None
) -> EgressGuard | None:
    """Start checking every connection of this process against ``settings``' allow-list
    (sandbox mode, egress not ``off``), and deal with the connections already open; the
    guard, or None when it is not on.

    ``lock`` gives the dry-run lock that records what the guard sees outside any job.
    ``installed`` is the guard this process installed before, if any: it is updated (or
    disabled) instead of adding a second hook (an audit hook cannot be removed).
    """
    policy = job_policy(settings)
    if policy is None:
        if installed is not None:
            installed.disable()
        return None
    guard = installed
    if guard is None:
        guard = EgressGuard(policy, lock)
        sys.addaudithook(guard.audit)
        _wrap_psycopg(guard)
    else:
        guard.policy, guard.lock = policy, lock
    guard.close_open_connections()
    return guard
