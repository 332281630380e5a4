"""The egress guard catches what nobody marked: in sandbox mode task code reaches the
platform's own services and the allow-list only; in live mode nothing is blocked."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from sandbox_platform import bind_correlation_id, create_app
from sandbox_platform.core.settings import load_settings
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import Alert, DeadLetter, DryRunEvent, JobRun
from tests.helpers import Receiver, wait_until
from tests.pools import ON_BOTH_POOLS
from tests.sandbox_shapes import register_shapes
from tests.warm_client import WARM_URL

pytestmark = [pytest.mark.slow, ON_BOTH_POOLS, pytest.mark.usefixtures("live_ready_limits")]
SHAPES_APP = "tests.shapes_app"
JOBS = 4


@pytest.fixture
def platform_settings_kwargs(pg_settings_kwargs):  # type: ignore[no-untyped-def]
    return pg_settings_kwargs


@pytest.fixture
def server() -> Iterator[Receiver]:
    local = Receiver()
    yield local
    local.close()


@pytest.fixture
def keep_alive_server() -> Iterator[Receiver]:
    local = Receiver(keep_alive=True)
    yield local
    local.close()


def _port(server: Receiver) -> int:
    return int(server.server.server_address[1])


def _rows(url: str, model: Any, correlation_id: str) -> list[Any]:
    with session_scope(url) as session:
        return list(session.scalars(select(model).where(model.correlation_id == correlation_id)))


def _run(task: Any, *args: object) -> str:
    with bind_correlation_id(f"egress-{uuid.uuid4().hex[:8]}") as correlation_id:
        task.delay(*args)
    return correlation_id


def _succeeded(url: str, correlation_id: str) -> bool:
    return any(r.state == "succeeded" for r in _rows(url, JobRun, correlation_id))


def test_an_unlisted_address_is_blocked_and_recorded_a_listed_one_passes(
    platform_app, worker_factory, pg_databases, server
) -> None:
    sandbox_db, _ = pg_databases
    tasks = register_shapes(platform_app)
    blocking = worker_factory(platform_app, SHAPES_APP)
    url = f"http://127.0.0.1:{_port(server)}/charge"

    blocked = [_run(tasks.http_get, url) for _ in range(JOBS)]  # in flight at once on threads
    for correlation_id in blocked:
        (letter,) = wait_until(lambda: _rows(sandbox_db, DeadLetter, correlation_id), timeout=60)  # noqa: B023
        assert letter.reason == "egress_blocked"
        assert "SandboxEgressBlocked" in (letter.detail or "")
        (event,) = wait_until(lambda: _rows(sandbox_db, DryRunEvent, correlation_id), timeout=30)  # noqa: B023
        assert event.action == "egress"
        assert event.arguments == {"destination": f"127.0.0.1:{_port(server)}", "blocked": True}
        assert event.task_id == letter.task_id  # each job's own
    assert server.gets == []  # the server received nothing
    blocking.stop()

    worker_factory(platform_app, SHAPES_APP, egress_allow=f"127.0.0.1:{_port(server)}")
    allowed = _run(tasks.http_get, url)
    wait_until(lambda: _succeeded(sandbox_db, allowed), timeout=60, message="allowed GET failed")
    assert server.gets == ["/charge"]


def test_a_keep_alive_connection_opened_at_import_is_not_reused_by_a_job(
    platform_app, worker_factory, pg_databases, keep_alive_server, monkeypatch
) -> None:
    """The worker module warms an HTTP/1.1 keep-alive client at import (before any job):
    a job using it reaches nothing, and the attempt is an egress event."""
    sandbox_db, _ = pg_databases
    tasks = register_shapes(platform_app)
    url = f"http://127.0.0.1:{_port(keep_alive_server)}/warm"
    monkeypatch.setenv(WARM_URL, url)
    worker_factory(platform_app, SHAPES_APP)
    assert keep_alive_server.gets == ["/warm"]  # the import's warm-up, outside any job
    used = [_run(tasks.warm_get, f"{url}-{n}") for n in range(JOBS)]
    for correlation_id in used:
        (letter,) = wait_until(lambda: _rows(sandbox_db, DeadLetter, correlation_id), timeout=60)  # noqa: B023
        assert letter.reason == "egress_blocked"
        events = wait_until(lambda: _rows(sandbox_db, DryRunEvent, correlation_id), timeout=30)  # noqa: B023
        assert [e.action for e in events] == ["egress"]
        assert events[0].arguments["blocked"] is True
    assert keep_alive_server.gets == ["/warm"]  # 0 requests of a job reached the host


def test_nothing_is_blocked_in_live_mode(
    platform_settings_kwargs, worker_factory, pg_databases, server
) -> None:
    _, live_db = pg_databases
    live_app = create_app(load_settings(**{**platform_settings_kwargs, "mode": "live"}))
    try:
        tasks = register_shapes(live_app)
        worker_factory(live_app, SHAPES_APP, mode="live", skip_readiness=True)
        correlation_id = _run(tasks.http_get, f"http://127.0.0.1:{_port(server)}/live")
        wait_until(lambda: _succeeded(live_db, correlation_id), timeout=60)
        assert server.gets == ["/live"]
        assert _rows(live_db, DryRunEvent, correlation_id) == []
    finally:
        live_app.close()


def test_platform_services_pass_the_live_database_is_blocked_webhooks_arrive(
    platform_app, worker_factory, pg_databases, server
) -> None:
    sandbox_db, live_db = pg_databases
    tasks = register_shapes(platform_app)
    worker = worker_factory(platform_app, SHAPES_APP, alert_webhook_url=server.url)

    services = _run(tasks.platform_services)  # a new Redis client, a first database engine
    wait_until(lambda: _succeeded(sandbox_db, services), timeout=60, message="services failed")

    live = _run(tasks.connect_db, live_db)
    (letter,) = wait_until(lambda: _rows(sandbox_db, DeadLetter, live), timeout=60)
    assert letter.reason == "egress_blocked" and "live database" in (letter.detail or "")
    alerts = wait_until(lambda: _rows(sandbox_db, Alert, live), timeout=30)
    assert [a.kind for a in alerts if a.severity != "info"] == ["task_failed"]
    worker.stop()  # a warm shutdown flushes the webhook queue
    assert [post["kind"] for post in server.posts] == ["task_failed"]
    assert server.posts[0]["correlation_id"] == live
