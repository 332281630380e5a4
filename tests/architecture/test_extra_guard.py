"""A guard from outside the package (tests/maintenance_guard.py) runs through a real worker:
declared with ``create_app(guards=[...])``, its task option checked at decoration time, its
hook deferring jobs while a maintenance window is open, without editing any platform module."""

from __future__ import annotations

import pytest
from celery import Celery
from sqlalchemy import select

from sandbox_platform import create_app, guarded_task, load_settings
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import JobRun
from tests.helpers import wait_until
from tests.maintenance_guard import DEFERRED_KEY, WINDOW_KEY, MaintenanceWindow

APP_MODULE = "tests.maintenance_app"


def test_the_extra_guard_declares_its_option(platform_app: Celery) -> None:
    with pytest.raises(ValueError, match=r"unknown guarded_task option.*maintenance_exempt"):
        guarded_task(platform_app, maintenance_exempt=True)  # an app without the guard
    settings = platform_app.platform_settings  # type: ignore[attr-defined]
    app = create_app(settings, guards=[MaintenanceWindow()])
    try:
        with pytest.raises(ValueError, match="maintenance_exempt must be True or False"):

            @guarded_task(app, name="maint.bad", maintenance_exempt="yes")
            def bad() -> None: ...

        @guarded_task(app, name="maint.declared", maintenance_exempt=True)
        def declared() -> None: ...

        assert declared.sp_options["maintenance_exempt"] is True
        assert [g.name for g in app.platform_guards][-1] == "maintenance"  # type: ignore[attr-defined]
    finally:
        app.close()


@pytest.mark.slow
def test_a_maintenance_window_defers_jobs_through_a_real_worker(
    worker_factory, platform_settings_kwargs, redis_client, sqlite_url
) -> None:
    app = create_app(load_settings(**platform_settings_kwargs), guards=[MaintenanceWindow()])
    worker_factory(app, APP_MODULE)
    redis_client.set(f"sp:{WINDOW_KEY}", "1")
    for n in range(5):
        app.send_task("maint.work", args=[n])
    app.send_task("maint.urgent", args=[99])

    wait_until(
        lambda: int(redis_client.get(f"sp:{DEFERRED_KEY}") or 0) >= 10,
        timeout=30,
        message="the maintenance guard did not defer the jobs",
    )
    assert redis_client.lrange("maint:done", 0, -1) == []  # nothing ran in the window
    assert redis_client.lrange("maint:urgent", 0, -1) == [b"99"]  # the exempt task did

    redis_client.delete(f"sp:{WINDOW_KEY}")
    wait_until(
        lambda: redis_client.llen("maint:done") == 5,
        timeout=30,
        message="the deferred jobs did not run after the window closed",
    )
    assert sorted(int(x) for x in redis_client.lrange("maint:done", 0, -1)) == [0, 1, 2, 3, 4]

    def runs() -> list[JobRun]:
        with session_scope(sqlite_url) as session:
            rows = session.scalars(select(JobRun).where(JobRun.task_name == "maint.work"))
            return list(rows)

    done = wait_until(lambda: (r := runs()) and sum(x.state == "succeeded" for x in r) == 5 and r)
    assert sum(r.state == "deferred" for r in done) >= 10  # recorded by the pipeline
    assert all(r.attempt == 1 for r in done)  # deferring never used a retry
    app.close()
