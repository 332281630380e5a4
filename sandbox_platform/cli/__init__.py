"""The ``sandbox-platform`` command line.

Every command reads the settings once; a settings problem prints one line naming the
variable and exits with code 2 (see :mod:`sandbox_platform.core.exits`). One module per
group of commands; this one assembles them.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from sandbox_platform.cli.dashboard import dashboard
from sandbox_platform.cli.db import db_app, sandbox_app
from sandbox_platform.cli.embedded import embedded_app
from sandbox_platform.cli.flower import flower
from sandbox_platform.cli.governor import governor_app
from sandbox_platform.cli.ops import dead_letters_app, health_command, show_settings, status_command
from sandbox_platform.cli.processes import EXTRA_ARGS, beat, demo, worker
from sandbox_platform.cli.queues import queues_app
from sandbox_platform.cli.readiness import readiness
from sandbox_platform.cli.records import alerts_app, dry_runs_app, jobs_app
from sandbox_platform.cli.secrets import secrets_app
from sandbox_platform.cli.up import up
from sandbox_platform.core.errors import PlatformError, SettingsError
from sandbox_platform.core.exits import settings_error_exit
from sandbox_platform.core.logging import configure_logging
from sandbox_platform.core.version import installed_version

__all__ = ["app", "main"]

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help=__doc__, pretty_exceptions_enable=False
)
app.add_typer(db_app, name="db")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(dead_letters_app, name="dead-letters")
app.add_typer(alerts_app, name="alerts")
app.add_typer(dry_runs_app, name="dry-runs")
app.add_typer(jobs_app, name="jobs")
app.add_typer(governor_app, name="governor")
app.add_typer(queues_app, name="queues")
app.add_typer(embedded_app, name="embedded")
app.add_typer(secrets_app, name="secrets")


def _print_version(value: bool) -> None:
    if value:
        print(installed_version())
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="print the version (the installed package's) and exit",
        ),
    ] = False,
) -> None:
    """The options before the command."""


app.command("settings")(show_settings)
app.command("status")(status_command)
app.command("health")(health_command)
app.command("readiness")(readiness)
app.command("worker", context_settings=dict(EXTRA_ARGS))(worker)
app.command("beat", context_settings=dict(EXTRA_ARGS))(beat)
app.command("flower", context_settings=dict(EXTRA_ARGS))(flower)
app.command("demo")(demo)
app.command("dashboard")(dashboard)
app.command("up")(up)


def main() -> None:
    """Console-script entry point: platform errors become one line, never a traceback."""
    # Log lines go to stderr (stdout is for reports and JSON); commands may raise the level.
    configure_logging("json", "WARNING")
    try:
        app()
    except SettingsError as error:
        settings_error_exit(error)
    except PlatformError as error:
        print(f"sandbox-platform: {error}", file=sys.stderr)
        raise SystemExit(1) from None
