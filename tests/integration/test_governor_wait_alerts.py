"""Pages only for trouble, with a real worker, Redis and a real webhook receiver: a burst the
governor paces is recorded as ``info`` deferrals and pages nobody; a resource that keeps a job
waiting longer than ``GOVERNOR_WAIT_ALERT_SECONDS`` raises one ``warning`` for that resource,
worked out from the first deferral's time carried by the re-queued message."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import select

from sandbox_platform.coordination.governor import Governor
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import Alert
from tests.helpers import Receiver, wait_until

pytestmark = pytest.mark.slow
WORKER_APP = "tests.worker_app"
RESOURCE = "test-bucket"  # the resource of tests.limited


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def _governor_alerts(url: str) -> list[Alert]:
    with session_scope(url) as session:
        query = select(Alert).where(Alert.kind.like("governor_%")).order_by(Alert.id)
        return list(session.scalars(query))


def _governor_posts(receiver: Receiver) -> list[dict[str, object]]:
    return [p for p in receiver.posts if str(p.get("kind", "")).startswith("governor_")]


def test_a_paced_burst_is_info_and_pages_nobody(
    guarded, worker_factory, platform_app, redis_client: redis.Redis, sqlite_url: str, receiver
) -> None:
    governor = Governor(redis_client, "sp")
    governor.set_limit(RESOURCE, 5, 1.0)
    worker = worker_factory(platform_app, WORKER_APP, alert_webhook_url=receiver.url)
    for i in range(20):
        guarded.limited.delay("burst-done", i)
    wait_until(
        lambda: redis_client.llen("burst-done") == 20,
        timeout=30,
        message="the burst did not run",
    )
    assert sorted(int(x) for x in redis_client.lrange("burst-done", 0, -1)) == list(range(20))
    assert governor.denials(RESOURCE) > 0  # the governor did pace it
    worker.stop()  # a warm shutdown flushes the webhook queue
    alerts = _governor_alerts(sqlite_url)
    assert alerts, "no governor_denied alert was recorded"
    assert {(a.kind, a.severity) for a in alerts} == {("governor_denied", "info")}
    assert alerts[0].context["resource"] == RESOURCE
    assert _governor_posts(receiver) == []  # below the webhook's default threshold


def test_a_resource_keeping_jobs_waiting_past_the_bound_raises_one_warning(
    guarded, worker_factory, platform_app, redis_client: redis.Redis, sqlite_url: str, receiver
) -> None:
    # 1 a second: every deferral is re-queued for at most 1 s, under the 2 s bound; only the
    # jobs that lose the race for a token again and again wait past it in all
    Governor(redis_client, "sp").set_limit(RESOURCE, 1, 1.0)
    worker = worker_factory(
        platform_app,
        WORKER_APP,
        alert_webhook_url=receiver.url,
        governor_wait_alert_seconds=2.0,
    )
    for i in range(6):
        guarded.limited.delay("slow-done", i)
    wait_until(
        lambda: redis_client.llen("slow-done") == 6,
        timeout=30,
        message="the jobs did not run",
    )
    worker.stop()
    alerts = _governor_alerts(sqlite_url)
    warnings = [a for a in alerts if a.severity != "info"]
    assert [(a.kind, a.severity) for a in warnings] == [("governor_wait_exceeded", "warning")]
    context = warnings[0].context
    assert context["resource"] == RESOURCE and context["bound_seconds"] == 2.0
    # past the bound (the alert compares unrounded; the context rounds to ms: 2.0004 -> 2.0)
    assert context["kept_waiting_seconds"] >= 2.0
    assert context["wait_seconds"] <= 1.01  # a 1 s bucket never asks a longer wait
    # the wait before this deferral came with the message: the first deferral's time travelled
    assert context["waited_seconds"] > 0.9
    assert RESOURCE in warnings[0].message and "2s bound" in warnings[0].message
    assert any(a.kind == "governor_denied" and a.severity == "info" for a in alerts)
    posts = _governor_posts(receiver)
    assert [(p["kind"], p["severity"]) for p in posts] == [("governor_wait_exceeded", "warning")]
