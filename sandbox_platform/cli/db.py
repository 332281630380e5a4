"""``db upgrade|downgrade|current`` and ``sandbox reset``: the platform's databases."""

from __future__ import annotations

import importlib
import sys
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from sandbox_platform.cli.common import cli_settings
from sandbox_platform.core.redaction import redact_value
from sandbox_platform.core.settings import Settings

__all__ = ["db_app", "sandbox_app"]

db_app = typer.Typer(no_args_is_help=True, help="Database schema migrations.")
sandbox_app = typer.Typer(no_args_is_help=True, help="The sandbox database.")
console = Console(stderr=True)


def _database_url(url: str | None, settings: Settings) -> str:
    return url or settings.active_database_url


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


def _bad_metadata(message: str) -> NoReturn:
    """One line on stderr and exit code 2: a bad ``--metadata`` is a usage error."""
    print(f"sandbox-platform: --metadata: {redact_value(message)}", file=sys.stderr)
    raise SystemExit(2)


def _load_object(path: str) -> object:
    """``module:attribute`` (dotted attribute allowed), or one line and exit 2."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        _bad_metadata(f"{path!r} is not module:attribute")
    try:
        value: object = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # the user's module: its errors are its own
        _bad_metadata(f"cannot import {module_name!r} ({type(exc).__name__}: {exc})")
    for part in attr.split("."):
        if not hasattr(value, part):
            _bad_metadata(f"{path!r}: {module_name!r} has no attribute {attr!r}")
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
            _bad_metadata(f"{type(item).__name__} is not a SQLAlchemy MetaData")
    target = url or settings.sandbox_database_url
    if not yes:
        typer.confirm(f"Drop and recreate every table in {redact_value(target)}?", abort=True)
    done = reset_sandbox(settings, url, [*app_metadata(), *extra])  # type: ignore[list-item]
    console.print(f"sandbox database reset: {redact_value(done)}")
