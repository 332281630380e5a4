"""Operator commands: ``dead-letters list|replay``, ``status``, ``health``, ``settings``."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from sandbox_platform.cli.common import cli_settings, load_app

__all__ = ["dead_letters_app", "health_command", "show_settings", "status_command"]

dead_letters_app = typer.Typer(no_args_is_help=True, help="Jobs that will not run by themselves.")
console = Console()


@dead_letters_app.command("list")
def list_command(
    reason: Annotated[str | None, typer.Option(help="only this reason")] = None,
    limit: Annotated[int, typer.Option(min=1, help="newest N")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List dead letters, newest first."""
    from sandbox_platform.db.deadletters import list_dead_letters

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
    from sandbox_platform.ops.deadletters import replay_dead_letter

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
    from sandbox_platform.core.redis_client import get_redis, redis_url
    from sandbox_platform.ops.status import platform_status

    settings = cli_settings()
    app = load_app(app_module, settings)
    status = platform_status(settings, app, get_redis(redis_url(settings)))
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

    from sandbox_platform.core.redis_client import get_redis, redis_url
    from sandbox_platform.ops.heartbeat import Heartbeat

    settings = cli_settings()
    heartbeat = Heartbeat(
        get_redis(redis_url(settings)),
        interval_seconds=settings.heartbeat_interval,
        prefix=settings.key_prefix,
    )
    name = host or socket.gethostname()
    alive = {w: age for w, age in heartbeat.workers().items() if w.endswith(f"@{name}")}
    if not alive:
        console.print(f"no live worker on {name}")
        raise typer.Exit(1)
    for worker, age in sorted(alive.items()):
        console.print(f"{worker} alive ({age:.1f}s since its last beat)")


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
