"""A live worker runs readiness before consuming: NO-GO refuses to start (naming the
reasons), GO starts, and the explicit override starts it anyway."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from sandbox_platform.app.live_gate import EXIT_NO_GO
from sandbox_platform.coordination.governor import Governor
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import Alert
from sandbox_platform.procs.worker import WorkerSubprocess
from tests.helpers import platform_env, wait_until

pytestmark = pytest.mark.slow
WORKER_APP = "tests.worker_app"


@pytest.fixture
def platform_settings_kwargs(pg_settings_kwargs):  # type: ignore[no-untyped-def]
    return {**pg_settings_kwargs, "mode": "live"}


def test_live_worker_refuses_to_start_on_no_go(
    platform_settings_kwargs, pg_databases, tmp_path
) -> None:
    # tests.limited declares the resource "test-bucket" and no limit is set: NO-GO.
    worker = WorkerSubprocess(
        WORKER_APP, env=platform_env(**platform_settings_kwargs), log_path=tmp_path / "refused.log"
    )
    worker.start()
    try:
        assert worker.process is not None
        code = worker.process.wait(120)
    finally:
        worker.stop()
    assert code == EXIT_NO_GO
    text = worker.log_text()
    assert "refused to start" in text and "GOVERNOR_LIMIT_MISSING" in text
    assert "Traceback" not in text
    _, live_db = pg_databases
    with session_scope(live_db) as session:
        alerts = session.scalars(select(Alert).where(Alert.kind == "readiness_no_go")).all()
    assert len(alerts) == 1 and alerts[0].severity == "critical"
    assert "GOVERNOR_LIMIT_MISSING" in alerts[0].context["reasons"]


def test_live_worker_starts_on_go_and_with_the_override(
    worker_factory, platform_app, redis_client
) -> None:
    worker_factory(platform_app, WORKER_APP, skip_readiness=True)  # override: starts anyway
    Governor(redis_client, "sp").set_limit("test-bucket", 100, 1.0)
    worker = worker_factory(platform_app, WORKER_APP)  # now GO: starts
    wait_until(lambda: "live worker readiness: GO" in worker.log_text(), timeout=30)
