"""Start-up lines tell the truth (issue 21, item 5), without services: the app named as the
command line named it, one beat holder id per process, no alert-sink error before migrations.
"""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from celery import Celery
from structlog.testing import capture_logs

from sandbox_platform.app.beat_scheduler import LeaderScheduler, beat_holder_id
from sandbox_platform.app.programs import app_reference
from sandbox_platform.ops.alerts import Alert, AlertDispatcher, DatabaseSink, Severity


def _app(**conf: object) -> Celery:
    app = Celery("sandbox_platform", set_as_current=False)  # create_app's default main
    app.conf.update(
        broker_url="redis://127.0.0.1:6379/12", beat_schedule={}, **conf
    )  # never connected
    return app


@pytest.mark.parametrize("given", ["shop_tasks", "shop_api:celery_app"])
def test_the_app_is_named_as_the_command_line_named_it(given: str) -> None:
    app = _app()
    root = click.Context(click.Group("celery"))
    root.params["app"] = given
    with root, click.Context(click.Command("worker"), parent=root):
        assert app_reference(app) == given


def test_without_a_command_line_the_app_is_its_main() -> None:
    assert app_reference(_app()) == "sandbox_platform"
    root = click.Context(click.Group("celery"))
    root.params["app"] = _app()  # app.worker_main(): the app object itself, not a name
    with root:
        assert app_reference(_app()) == "sandbox_platform"


def test_every_scheduler_of_a_process_names_one_holder() -> None:
    """Celery builds a second scheduler for the beat banner: both name the same holder."""
    app = _app()
    banner = LeaderScheduler(app=app, lazy=True)
    running = LeaderScheduler(app=app, lazy=True)
    assert banner.lease.holder_id == running.lease.holder_id == beat_holder_id(app)
    assert running.lease.holder_id in banner.info
    other = LeaderScheduler(app=_app(), lazy=True)  # another app (tests run two in one process)
    assert other.lease.holder_id != running.lease.holder_id


def test_a_configured_holder_id_is_kept() -> None:
    app = _app(sandbox_platform_beat_holder_id="beat-a")
    assert LeaderScheduler(app=app, lazy=True).lease.holder_id == "beat-a"


def test_no_alerts_table_is_one_short_warning_not_a_sink_failure(tmp_path: Path) -> None:
    from sandbox_platform.db import migrate

    url = f"sqlite:///{tmp_path / 'unmigrated.sqlite3'}"
    sink = DatabaseSink(url)
    dispatcher = AlertDispatcher()
    dispatcher.subscribe(sink)
    with capture_logs() as logs:
        for n in range(3):
            dispatcher.emit(Alert(Severity.CRITICAL, "readiness_no_go", f"no go {n}"))
    assert dispatcher.stats()["sink_errors"] == 0
    assert [e["event"] for e in logs] == ["alerts_not_stored"]
    assert "sandbox-platform db upgrade" in logs[0]["reason"]
    assert "does not exist" not in str(logs) and "INSERT" not in str(logs)

    migrate.upgrade(url)  # the table is there now: alerts are stored again
    dispatcher.emit(Alert(Severity.CRITICAL, "readiness_no_go", "stored"))
    assert sink.count() == 1
