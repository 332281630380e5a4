"""The ``sandbox-platform`` command line.

Every command reads the settings once; a settings problem prints one line naming the
variable and exits with code 2 (see :mod:`sandbox_platform.entrypoint`).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from sandbox_platform.cli_ops import (
    cli_settings,
    dead_letters_app,
    health_command,
    load_app,
    status_command,
)
from sandbox_platform.entrypoint import settings_error_exit
from sandbox_platform.errors import PlatformError, SettingsError
from sandbox_platform.redaction import redact_value
from sandbox_platform.settings import Settings, load_settings
from sandbox_platform.supervisor import Supervisor

__all__ = ["app", "main"]

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help=__doc__, pretty_exceptions_enable=False
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema migrations.")
app.add_typer(db_app, name="db")
sandbox_app = typer.Typer(no_args_is_help=True, help="The sandbox database.")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(dead_letters_app, name="dead-letters")
app.command("status")(status_command)
app.command("health")(health_command)
console = Console(stderr=True)

WORKER_FLAGS = ["--without-gossip", "--without-mingle", "--without-heartbeat"]


def _database_url(url: str | None, settings: Settings) -> str:
    return url or settings.active_database_url


@app.command("settings")
def show_settings(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Validate the settings and print them, credentials masked."""
    values = cli_settings().public_dict()
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

    target = _database_url(url, cli_settings())
    migrate.upgrade(target, revision)
    console.print(f"database at revision {migrate.current_revision(target)}")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Option(help="target revision ('base' drops all)")] = "-1",
    url: Annotated[str | None, typer.Option(help="database URL (default: the mode's)")] = None,
) -> None:
    """Migrate the database down to REVISION."""
    from sandbox_platform.db import migrate

    target = _database_url(url, cli_settings())
    migrate.downgrade(target, revision)
    console.print(f"database at revision {migrate.current_revision(target)}")


@db_app.command("current")
def db_current(
    url: Annotated[str | None, typer.Option(help="database URL (default: the mode's)")] = None,
) -> None:
    """Print the database's revision and the code's head."""
    from sandbox_platform.db import migrate

    target = _database_url(url, cli_settings())
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

    settings = cli_settings()
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


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(
    ctx: typer.Context,
    processes: Annotated[
        int | None, typer.Option(help="consumer processes (default: one per core)")
    ] = None,
    pool: Annotated[str, typer.Option(help="solo, or prefork for hard time limits")] = "solo",
    app_module: Annotated[str, typer.Option("--app", help="Celery app module")] = "workers",
    skip_readiness: Annotated[
        bool, typer.Option("--skip-readiness", help="live mode: start even on NO-GO")
    ] = False,
) -> None:
    """Start worker consumers: one process per core, solo pool, lean flags (see DESIGN.md).

    A consumer that dies is started again; a settings error or a live NO-GO stops them all.
    """
    settings = cli_settings()
    if pool not in ("solo", "prefork"):
        raise typer.BadParameter("must be solo or prefork", param_hint="--pool")
    count = processes or os.cpu_count() or 1
    if count < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--processes")
    base = [sys.executable, "-m", "celery", "-A", app_module, "worker", "--pool", pool]
    if pool == "prefork":
        base += ["--concurrency", "1"]
    commands = [
        [*base, *WORKER_FLAGS, "-n", f"worker{i}@%h", *ctx.args] for i in range(1, count + 1)
    ]
    env = _celery_env(settings)
    if skip_readiness:
        env["SANDBOX_PLATFORM_SKIP_READINESS"] = "true"
    raise typer.Exit(Supervisor(commands, env).run())


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def beat(
    ctx: typer.Context,
    app_module: Annotated[str, typer.Option("--app", help="Celery app module")] = "beat",
) -> None:
    """Start the scheduler (one leader at a time; extra beats stay standby)."""
    settings = cli_settings()
    command = [sys.executable, "-m", "celery", "-A", app_module, "beat", *ctx.args]
    raise typer.Exit(Supervisor([command], _celery_env(settings)).run())


@app.command()
def demo(
    orders: Annotated[int, typer.Option(help="how many demo orders to run")] = 3,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the results")] = 60.0,
) -> None:
    """Run the platform end to end on embedded defaults: a worker processes demo orders."""
    from sandbox_platform.demo import run_demo

    raise typer.Exit(run_demo(cli_settings(), orders=orders, timeout=timeout))


# -- readiness (begin) ----------------------------------------------------------------------


def _readiness_settings() -> Settings:
    """Settings even when sandbox and live coincide: the report then says NO-GO, exit 1."""
    from sandbox_platform.errors import IsolationError

    try:
        return load_settings()
    except IsolationError:
        try:
            return load_settings(enforce_isolation=False)
        except SettingsError as error:
            settings_error_exit(error)
    except SettingsError as error:
        settings_error_exit(error)


@app.command()
def readiness(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    app_module: Annotated[str, typer.Option("--app", help="Celery app module")] = "workers",
    timeout: Annotated[
        float | None, typer.Option(help="seconds per check (default: the setting)")
    ] = None,
    skip: Annotated[
        list[str] | None, typer.Option(help="a check not to run (repeatable, or a,b)")
    ] = None,
) -> None:
    """GO/NO-GO: check everything the platform needs; exit 0 on GO, 1 on NO-GO."""
    from rich.text import Text

    from sandbox_platform.readiness import CHECK_NAMES, ReadinessChecker

    skipped = [name.strip() for item in skip or [] for name in item.split(",") if name.strip()]
    unknown = sorted(set(skipped) - set(CHECK_NAMES))
    if unknown:
        raise typer.BadParameter(
            f"unknown check(s) {', '.join(unknown)}; known: {', '.join(CHECK_NAMES)}",
            param_hint="--skip",
        )
    if timeout is not None and timeout <= 0:
        raise typer.BadParameter("must be positive", param_hint="--timeout")
    settings = _readiness_settings()
    from sandbox_platform.logging import configure_logging

    # to stderr (stdout is the report); the report itself says what INFO lines would
    level = "WARNING" if settings.log_level in ("DEBUG", "INFO") else settings.log_level
    configure_logging(settings.log_format, level)
    notes: list[str] = []
    celery_app = load_app(app_module, settings, notes)
    from sandbox_platform.alert_wiring import alert_readiness_no_go

    report = ReadinessChecker(
        settings, celery_app, timeout=timeout, skip=skipped, on_no_go=alert_readiness_no_go
    ).run()
    if as_json:
        print(json.dumps({**report.to_dict(), "notes": notes}, indent=2))
    else:
        for note in notes:
            console.print(f"note: {note}", markup=False, highlight=False)
        table = Table("check", "state", "code", "message", "ms")
        for result in report.checks:
            state = "[green]GO[/]" if result.ok else "[red]NO-GO[/]"
            table.add_row(
                result.name, state, result.code, Text(result.message), f"{result.duration_ms:.0f}"
            )
        out = Console()
        out.print(table)
        reasons = f" ({', '.join(report.reasons)})" if report.reasons else ""
        color = "green" if report.go else "red"
        out.print(f"[bold {color}]{report.verdict}[/]{reasons}")
    raise typer.Exit(0 if report.go else 1)


# -- readiness (end) ------------------------------------------------------------------------


def main() -> None:
    """Console-script entry point: platform errors become one line, never a traceback."""
    from sandbox_platform.logging import configure_logging

    # Log lines go to stderr (stdout is for reports and JSON); commands may raise the level.
    configure_logging("json", "WARNING")
    try:
        app()
    except SettingsError as error:
        settings_error_exit(error)
    except PlatformError as error:
        print(f"sandbox-platform: {error}", file=sys.stderr)
        raise SystemExit(1) from None
