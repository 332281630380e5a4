"""The egress guard's allow-list and its block/record/off modes, in process. The guard a test
installs is disabled at its end (an audit hook cannot be removed; ``off`` makes it inert)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from sandbox_platform import SandboxEgressBlocked
from sandbox_platform.core.jobscope import JobScope, job_scope
from sandbox_platform.core.settings import Mode, load_settings
from sandbox_platform.guards.dry_run import DryRunLock
from sandbox_platform.guards.egress import (
    EgressGuard,
    install_egress_guard,
    job_policy,
    policy_from,
)


def _settings(**overrides: Any) -> Any:
    base = {
        "redis_url": "redis://127.0.0.1:6379/9",
        "database_url": "postgresql://u@db.internal:5433/sandbox",
        "live_database_url": "postgresql://u@db.internal:5433/live",
        "alert_webhook_url": "https://hooks.example.com/x",
    }
    return load_settings(**{**base, **overrides})


def test_the_allow_list_holds_the_platforms_services_and_the_setting() -> None:
    policy = policy_from(_settings(egress_allow="api.partner.test:443, *.cdn.test:*"))
    assert policy.allows("127.0.0.1", 6379) and policy.allows("localhost", 6379)
    assert policy.allows("db.internal", 5433)
    assert policy.allows("hooks.example.com", 443)
    assert policy.allows("api.partner.test", 443) and not policy.allows("api.partner.test", 80)
    assert policy.allows("img.cdn.test", 8080)
    assert not policy.allows("127.0.0.1", 8080)
    assert not policy.allows("example.org", 443)
    assert policy.live_database == ("postgresql", "db.internal", "5433", "live")


def test_the_otlp_endpoint_is_on_the_list_when_tracing_is_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.test:4318")
    assert not policy_from(_settings()).allows("collector.test", 4318)
    assert policy_from(_settings(otel=True)).allows("collector.test", 4318)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    assert policy_from(_settings(otel=True)).allows("localhost", 4318)  # OTel's default


def test_a_live_app_or_egress_off_holds_its_jobs_to_nothing() -> None:
    assert job_policy(_settings(mode="live")) is None
    assert job_policy(_settings(egress_mode="off")) is None
    assert job_policy(_settings()) is not None


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Guarded:
    """The guard a test installs, its events, and the connect helpers."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.lock = DryRunLock(Mode.SANDBOX, sink=self.events.append)
        self.guard: EgressGuard | None = None

    def install(self, **settings: Any) -> EgressGuard | None:
        self.guard = install_egress_guard(_settings(**settings), lambda: self.lock, self.guard)
        return self.guard


@pytest.fixture
def guarded() -> Iterator[Guarded]:
    made = Guarded()
    yield made
    if made.guard is not None:
        made.guard.disable()


def _connect(port: int, services: Any = None) -> None:
    scope = JobScope("t-1", "unit.egress", services=services)
    with socket.socket() as sock, job_scope(scope):
        sock.settimeout(2)
        sock.connect(("127.0.0.1", port))


def _connect_outside_jobs(port: int) -> None:
    with socket.socket() as sock:
        sock.settimeout(2)
        sock.connect(("127.0.0.1", port))


def test_block_record_and_off(guarded: Guarded) -> None:
    port = _closed_port()
    events = guarded.events

    assert guarded.install(egress_mode="block") is not None
    with pytest.raises(SandboxEgressBlocked, match=f"127.0.0.1:{port}"):
        _connect(port)
    assert events[-1]["arguments"] == {"destination": f"127.0.0.1:{port}", "blocked": True}
    assert events[-1]["action"] == "egress" and events[-1]["task_id"] == "t-1"

    guarded.install(egress_mode="record")
    with pytest.raises(ConnectionRefusedError):  # let through (nothing listens there)
        _connect(port)
    assert events[-1]["arguments"]["blocked"] is False

    assert guarded.install(egress_mode="off") is None
    with pytest.raises(ConnectionRefusedError):
        _connect(port)
    # (other tests of this process may have left connections the install found and recorded)
    mine = [e for e in events if e["arguments"]["destination"] == f"127.0.0.1:{port}"]
    assert len(mine) == 2


def test_every_thread_is_checked_not_only_jobs(guarded: Guarded) -> None:
    port = _closed_port()
    guarded.install(egress_mode="block")
    with pytest.raises(SandboxEgressBlocked):
        _connect_outside_jobs(port)
    assert guarded.events[-1]["task_id"] is None

    errors: list[BaseException] = []

    def in_a_thread() -> None:
        try:
            _connect_outside_jobs(port)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join(10)
    assert [type(e) for e in errors] == [SandboxEgressBlocked]
    assert len(guarded.events) == 2


def test_a_job_is_held_to_its_own_apps_policy_and_recorded_by_its_lock(
    guarded: Guarded,
) -> None:
    port = _closed_port()
    guarded.install(egress_mode="block")
    mine: list[dict[str, Any]] = []
    sandbox_job = SimpleNamespace(
        egress=policy_from(_settings(egress_allow="example.org:443")),
        dry_run_lock=DryRunLock(Mode.SANDBOX, sink=mine.append),
    )
    with pytest.raises(SandboxEgressBlocked):
        _connect(port, sandbox_job)
    assert [e["arguments"]["destination"] for e in mine] == [f"127.0.0.1:{port}"]
    assert guarded.events == []  # the job's app recorded it, not the worker's

    live_job = SimpleNamespace(egress=None, dry_run_lock=DryRunLock(Mode.LIVE))
    with pytest.raises(ConnectionRefusedError):  # a live app's job: let through
        _connect(port, live_job)
    listed = SimpleNamespace(
        egress=policy_from(_settings(egress_allow=f"127.0.0.1:{port}")),
        dry_run_lock=DryRunLock(Mode.SANDBOX, sink=mine.append),
    )
    with pytest.raises(ConnectionRefusedError):
        _connect(port, listed)
    assert len(mine) == 1


def test_never_in_live_mode(guarded: Guarded) -> None:
    assert guarded.install(mode="live", egress_mode="block") is None
    with pytest.raises(ConnectionRefusedError):
        _connect(_closed_port())
    with pytest.raises(ConnectionRefusedError):
        _connect_outside_jobs(_closed_port())
    assert guarded.events == []


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    yield server
    server.close()


def _accepted_pair(listener: socket.socket) -> tuple[socket.socket, socket.socket]:
    client = socket.create_connection(listener.getsockname(), timeout=5)
    peer, _address = listener.accept()
    peer.settimeout(5)
    return client, peer


def test_a_connection_open_before_the_guard_is_shut_down_and_recorded(
    guarded: Guarded, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    client, peer = _accepted_pair(listener)  # opened before: "warmed at import"
    with client, peer:
        guarded.install(egress_mode="block")
        assert peer.recv(16) == b""  # the off-list connection was shut down: EOF
        with pytest.raises(OSError):
            client.sendall(b"GET / HTTP/1.1\r\n\r\n" * 4096)
        assert client.fileno() >= 0  # shut down, not closed (its descriptor stays taken)
    blocked = [e["arguments"] for e in guarded.events]
    assert {"destination": f"127.0.0.1:{port}", "blocked": True} in blocked


def test_a_listed_or_merely_recorded_connection_is_left_open(
    guarded: Guarded, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    client, peer = _accepted_pair(listener)
    with client, peer:
        guarded.install(egress_mode="block", egress_allow=f"127.0.0.1:{port}")
        client.sendall(b"ping")
        assert peer.recv(4) == b"ping"
        guarded.install(egress_mode="record")
        client.sendall(b"pong")
        assert peer.recv(4) == b"pong"
    assert [e["arguments"]["blocked"] for e in guarded.events] == [False]
