"""The ``sandbox-platform`` command line.

Every command reads the settings once; a settings problem prints one line naming the
variable and exits with code 2 (see :mod:`sandbox_platform.entrypoint`).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from sandbox_platform.entrypoint import settings_error_exit
from sandbox_platform.errors import PlatformError, SettingsError
from sandbox_platform.redaction import redact_value
from sandbox_platform.settings import Settings, load_settings

__all__ = ["app", "main"]

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help=__doc__, pretty_exceptions_enable=False
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema migrations.")
app.add_typer(db_app, name="db")
sandbox_app = typer.Typer(no_args_is_help=True, help="The sandbox database.")
app.add_typer(sandbox_app, name="sandbox")
console = Console(stderr=True)

WORKER_FLAGS = ["--without-gossip", "--without-mingle", "--without-heartbeat"]


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as error:
        settings_error_exit(error)


def _database_url(url: str | None, settings: Settings) -> str:
    return url or settings.active_database_url


@app.command("settings")
def show_settings(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Validate the settings and print them, credentials masked."""
    values = _settings().public_dict()
    if as_json:
        print(json.dumps(values, indent=2))
        return
    table = Table("setting", "value")
    for key, value in values.items():
        table.add_row(f"SANDBOX_PLATFORM_{key.upper()}", "" if value is None else str(value))
    Console().print(table)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="target revision")] = "head",
    url: Annotated[str | None, typer.Option(help="database URL (default: the mode's)")] = None,
) -> None:
    """Migrate the database of the current mode (or --url) up to REVISION."""
    from sandbox_platform.db import migrate

    target = _database_url(url, _settings())
    migrate.upgrade(target, revision)
    console.print(f"database at revision {migrate.current_revision(target)}")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Option(help="target revision ('base' drops all)")] = "-1",
    url: Annotated[str | None, typer.Option(help="database URL (default: the mode's)")] = None,
) -> None:
    """Migrate the database down to REVISION."""
    from sandbox_platform.db import migrate

    target = _database_url(url, _settings())
    migrate.downgrade(target, revision)
    console.print(f"database at revision {migrate.current_revision(target)}")


@db_app.command("current")
def db_current(
    url: Annotated[str | None, typer.Option(help="database URL (default: the mode's)")] = None,
) -> None:
    """Print the database's revision and the code's head."""
    from sandbox_platform.db import migrate

    target = _database_url(url, _settings())
    print(f"current={migrate.current_revision(target)} head={migrate.head_revision(target)}")


def _load_object(path: str) -> object:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise typer.BadParameter(f"{path!r} is not module:attribute", param_hint="--metadata")
    value: object = importlib.import_module(module_name)
    for part in attr.split("."):
        value = getattr(value, part)
    return value


@sandbox_app.command("reset")
def sandbox_reset(
    url: Annotated[str | None, typer.Option(help="database URL (default: the sandbox one)")] = None,
    metadata: Annotated[
        list[str] | None,
        typer.Option(help="the app's SQLAlchemy MetaData as module:attribute (repeatable)"),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
) -> None:
    """Recreate the sandbox database's schema from scratch (never the live database)."""
    from sqlalchemy import MetaData

    from sandbox_platform.db.session import app_metadata, reset_sandbox

    settings = _settings()
    extra = [_load_object(path) for path in metadata or []]
    for item in extra:
        if not isinstance(item, MetaData):
            raise typer.BadParameter(f"{item!r} is not a MetaData", param_hint="--metadata")
    target = url or settings.sandbox_database_url
    if not yes:
        typer.confirm(f"Drop and recreate every table in {redact_value(target)}?", abort=True)
    done = reset_sandbox(settings, url, [*app_metadata(), *extra])  # type: ignore[list-item]
    console.print(f"sandbox database reset: {redact_value(done)}")


def _celery_env(settings: Settings) -> dict[str, str]:
    """The environment for a child celery process: the resolved Redis URL made explicit."""
    from sandbox_platform.redis_client import redis_url

    env = dict(os.environ)
    env["SANDBOX_PLATFORM_REDIS_URL"] = redis_url(settings)
    return env


def _supervise(commands: list[list[str]], env: dict[str, str]) -> int:
    """Run the commands side by side; forward SIGINT/SIGTERM; return the worst exit code."""
    children = [subprocess.Popen(cmd, env=env) for cmd in commands]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    return max(codes, default=0)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(
    ctx: typer.Context,
    processes: Annotated[
        int | None, typer.Option(help="consumer processes (default: one per core)")
    ] = None,
    pool: Annotated[str, typer.Option(help="solo, or prefork for hard time limits")] = "solo",
    app_module: Annotated[str, typer.Option("--app", help="Celery app module")] = "workers",
) -> None:
    """Start worker consumers: one process per core, solo pool, lean flags (see DESIGN.md)."""
    settings = _settings()
    count = processes or os.cpu_count() or 1
    if count < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--processes")
    base = [sys.executable, "-m", "celery", "-A", app_module, "worker", "--pool", pool]
    if pool == "prefork":
        base += ["--concurrency", "1"]
    commands = [
        [*base, *WORKER_FLAGS, "-n", f"worker{i}@%h", *ctx.args] for i in range(1, count + 1)
    ]
    raise typer.Exit(_supervise(commands, _celery_env(settings)))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def beat(
    ctx: typer.Context,
    app_module: Annotated[str, typer.Option("--app", help="Celery app module")] = "beat",
) -> None:
    """Start the scheduler (one leader at a time; extra beats stay standby)."""
    settings = _settings()
    command = [sys.executable, "-m", "celery", "-A", app_module, "beat", *ctx.args]
    raise typer.Exit(_supervise([command], _celery_env(settings)))


@app.command()
def demo(
    orders: Annotated[int, typer.Option(help="how many demo orders to run")] = 3,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the results")] = 60.0,
) -> None:
    """Run the platform end to end on embedded defaults: a worker processes demo orders."""
    from sandbox_platform.demo import run_demo

    raise typer.Exit(run_demo(_settings(), orders=orders, timeout=timeout))


def main() -> None:
    """Console-script entry point: platform errors become one line, never a traceback."""
    try:
        app()
    except SettingsError as error:
        settings_error_exit(error)
    except PlatformError as error:
        print(f"sandbox-platform: {error}", file=sys.stderr)
        raise SystemExit(1) from None
