"""The egress guard's allow-list and its block/record/off modes, in process (the hook acts
only inside a job's context, so it is inert for the rest of the test session)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox_platform import SandboxEgressBlocked
from sandbox_platform.core.jobscope import JobScope, job_scope
from sandbox_platform.core.settings import Mode, load_settings
from sandbox_platform.guards.dry_run import DryRunLock
from sandbox_platform.guards.egress import install_egress_guard, policy_from


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


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    recorded: list[dict[str, Any]] = []
    yield recorded
    install_egress_guard(_settings(egress_mode="off"), lambda: DryRunLock(Mode.SANDBOX))


def _connect(port: int) -> None:
    with socket.socket() as sock, job_scope(JobScope("t-1", "unit.egress")):
        sock.settimeout(2)
        sock.connect(("127.0.0.1", port))


def test_block_record_and_off(events: list[dict[str, Any]]) -> None:
    lock = DryRunLock(Mode.SANDBOX, sink=events.append)
    port = _closed_port()

    install_egress_guard(_settings(egress_mode="block"), lambda: lock)
    with pytest.raises(SandboxEgressBlocked, match=f"127.0.0.1:{port}"):
        _connect(port)
    assert events[-1]["arguments"] == {"destination": f"127.0.0.1:{port}", "blocked": True}
    assert events[-1]["action"] == "egress" and events[-1]["task_id"] == "t-1"

    install_egress_guard(_settings(egress_mode="record"), lambda: lock)
    with pytest.raises(ConnectionRefusedError):  # let through (nothing listens there)
        _connect(port)
    assert events[-1]["arguments"]["blocked"] is False

    with socket.socket() as sock:  # outside a job: never checked
        sock.settimeout(2)
        with pytest.raises(ConnectionRefusedError):
            sock.connect(("127.0.0.1", port))
    install_egress_guard(_settings(egress_mode="off"), lambda: lock)
    with pytest.raises(ConnectionRefusedError):
        _connect(port)
    assert len(events) == 2


def test_never_in_live_mode(events: list[dict[str, Any]]) -> None:
    live = _settings(mode="live", egress_mode="block")
    assert install_egress_guard(live, lambda: DryRunLock(Mode.LIVE, sink=events.append)) is False
    with pytest.raises(ConnectionRefusedError):
        _connect(_closed_port())
    assert events == []
