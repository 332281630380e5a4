"""Operator commands: ``dead-letters list|replay`` and ``status``."""

from __future__ import annotations

import importlib
import json
from typing import Annotated

import typer
from celery import Celery
from rich.console import Console
from rich.table import Table

from sandbox_platform.entrypoint import settings_error_exit
from sandbox_platform.errors import SettingsError
from sandbox_platform.settings import Settings, load_settings

__all__ = [
    "cli_settings",
    "dead_letters_app",
    "health_command",
    "load_app",
    "status_command",
]

dead_letters_app = typer.Typer(no_args_is_help=True, help="Jobs that will not run by themselves.")
console = Console()


def cli_settings() -> Settings:
    """The settings, or one line naming the bad variable and exit code 2."""
    try:
        return load_settings()
    except SettingsError as error:
        settings_error_exit(error)


def load_app(app_module: str, settings: Settings, notes: list[str] | None = None) -> Celery:
    """``<module>.app`` (for its task registry); else a platform app built from the settings.

    Why the module could not be used goes to ``notes`` (or is printed when none is given).
    """
    import contextlib
    import io
    import sys

    from sandbox_platform.celery_app import create_app
    from sandbox_platform.redaction import redact_value

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            candidate = importlib.import_module(app_module).app
        sys.stderr.write(captured.getvalue())
        if isinstance(candidate, Celery):
            return candidate
        problem = f"{app_module}.app is a {type(candidate).__name__}, not a Celery app"
    except (Exception, SystemExit) as exc:  # an app module exits 2 on a settings error
        said = " ".join(captured.getvalue().split())
        problem = f"cannot import {app_module}.app ({type(exc).__name__}: {exc}) {said}".strip()
    note = f"{redact_value(problem)}; using a platform app built from the settings"
    if notes is None:
        Console(stderr=True).print(f"note: {note}", markup=False, highlight=False)
    else:
        notes.append(note)
    return create_app(settings)


@dead_letters_app.command("list")
def list_command(
    reason: Annotated[str | None, typer.Option(help="only this reason")] = None,
    limit: Annotated[int, typer.Option(min=1, help="newest N")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List dead letters, newest first."""
    from sandbox_platform.deadletters import list_dead_letters

    letters = list_dead_letters(cli_settings().active_database_url, reason=reason, limit=limit)
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "id": d.id,
                        "task_id": d.task_id,
                        "task_name": d.task_name,
                        "reason": d.reason,
                        "detail": d.detail,
                        "correlation_id": d.correlation_id,
                        "created_at": d.created_at.isoformat(),
                        "replayed_at": d.replayed_at.isoformat() if d.replayed_at else None,
                        "message": d.message,
                    }
                    for d in letters
                ],
                indent=2,
                default=str,
            )
        )
        return
    table = Table("id", "task", "reason", "correlation id", "created", "replayed", "detail")
    for d in letters:
        table.add_row(
            str(d.id),
            d.task_name,
            d.reason,
            d.correlation_id or "",
            d.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            d.replayed_at.strftime("%Y-%m-%d %H:%M:%S") if d.replayed_at else "",
            (d.detail or "")[:80],
        )
    console.print(table)


@dead_letters_app.command("replay")
def replay_command(
    dead_letter_id: Annotated[int, typer.Argument(help="the dead letter's id")],
    app_module: Annotated[str, typer.Option("--app", help="Celery app module")] = "workers",
) -> None:
    """Publish a dead letter again, keeping its idempotency key and correlation id."""
    from sandbox_platform.deadletters import replay_dead_letter

    settings = cli_settings()
    task_id = replay_dead_letter(
        load_app(app_module, settings), settings.active_database_url, dead_letter_id
    )
    console.print(f"dead letter {dead_letter_id} replayed as task {task_id}")


def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    app_module: Annotated[str, typer.Option("--app", help="Celery app module")] = "workers",
) -> None:
    """The platform's status: readiness, heartbeat, governor, queue, jobs, alerts."""
    from sandbox_platform.runtime import runtime
    from sandbox_platform.status import platform_status

    settings = cli_settings()
    app = load_app(app_module, settings)
    status = platform_status(runtime(), app)
    print(json.dumps(status, indent=2, default=str) if as_json else _render(status))


def _render(status: dict[str, object]) -> str:
    lines = []
    for key, value in status.items():
        text = json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
        lines.append(f"{key:22} {text}")
    return "\n".join(lines)


def health_command(
    host: Annotated[
        str | None, typer.Option(help="the worker host to check (default: this host's name)")
    ] = None,
) -> None:
    """Liveness of this host's workers (a container probe): exit 0 if one is alive, else 1.

    A worker is alive while it refreshes its liveness key (every half heartbeat interval,
    TTL interval + 1 s).
    """
    import socket

    from sandbox_platform.runtime import runtime

    name = host or socket.gethostname()
    alive = {w: age for w, age in runtime().heartbeat.workers().items() if w.endswith(f"@{name}")}
    if not alive:
        console.print(f"no live worker on {name}")
        raise typer.Exit(1)
    for worker, age in sorted(alive.items()):
        console.print(f"{worker} alive ({age:.1f}s since its last beat)")
