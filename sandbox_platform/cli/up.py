"""``up``: the whole platform on this machine with one command.

With nothing configured it starts an embedded Redis (and stops it again), migrates the SQLite
sandbox database, and supervises worker consumers, a beat and the dashboard until Ctrl-C,
after which no process it started is left. With URLs configured it uses them.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from sandbox_platform.cli.common import (
    AppOption,
    app_module,
    celery_env,
    cli_settings,
    load_app,
    require_extra,
)

__all__ = ["up"]


def up(
    processes: Annotated[int, typer.Option(min=1, help="worker consumer processes")] = 1,
    host: Annotated[str, typer.Option(help="dashboard address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="dashboard port")] = 8600,
    app_option: AppOption = None,
) -> None:
    """Start Redis (embedded if none is configured), workers, beat and the dashboard."""
    from sandbox_platform.core.embedded import embedded_redis_running, stop_embedded_redis
    from sandbox_platform.db import migrate
    from sandbox_platform.procs.supervisor import Supervisor

    require_extra("dashboard", "the up command (it serves the dashboard)")
    settings = cli_settings()
    module = app_module(app_option, settings)
    started_redis = settings.embedded_redis and not embedded_redis_running(settings.data_dir)
    try:
        env = celery_env(settings)  # starts the embedded server when none is configured
        load_app(module, settings)  # one line and exit 2 before anything starts
        migrate.upgrade(settings.active_database_url)
        me = [sys.executable, "-m", "sandbox_platform"]
        commands = [
            [*me, "worker", "--processes", str(processes), "--app", module],
            [*me, "beat", "--app", module],
            [*me, "dashboard", "--host", host, "--port", str(port), "--app", module],
        ]
        print(
            f"sandbox-platform up ({settings.mode.value} mode): dashboard at "
            f"http://{host}:{port}/ - Ctrl-C stops everything",
            flush=True,
        )
        code = Supervisor(commands, env).run()
    finally:
        if started_redis:  # leave no daemon behind that this command started
            stop_embedded_redis(settings.data_dir)
    raise typer.Exit(code)
