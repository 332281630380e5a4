"""Operator commands: ``dead-letters list|replay``, ``status``, ``health``, ``settings``."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.text import Text

from sandbox_platform.cli.common import AppOption, app_module, cli_settings, load_app
from sandbox_platform.cli.render import (
    add_row,
    audit_action,
    compact,
    new_table,
    print_json,
    reading_database,
    short_time,
    stdout_console,
)
from sandbox_platform.cli.status_view import print_status
from sandbox_platform.core.settings import Settings

__all__ = [
    "broker_url_in_use",
    "dead_letters_app",
    "health_command",
    "show_settings",
    "status_command",
]

dead_letters_app = typer.Typer(no_args_is_help=True, help="Jobs that will not run by themselves.")
console = stdout_console()


@dead_letters_app.command("list")
def list_command(
    reason: Annotated[str | None, typer.Option(help="only this reason")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="newest N")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List dead letters, newest first (their arguments masked)."""
    from sandbox_platform.core.redaction import redact_value
    from sandbox_platform.ops.records import list_dead_letters

    url = cli_settings().active_database_url
    with reading_database(url):
        letters = list_dead_letters(url, reason=reason, limit=limit)
    for letter in letters:  # the detail is masked when stored; mask it again for display
        letter["detail"] = redact_value(letter["detail"]) if letter["detail"] else None
    if as_json:
        print_json(letters)
        return
    table = new_table(
        "id", "task", "reason", "arguments", "correlation id", "created", "replayed", "detail"
    )
    for d in letters:
        add_row(
            table,
            str(d["id"]),
            d["task_name"],
            d["reason"],
            Text(_arguments(d["message"] or {})),
            d["correlation_id"] or "",
            short_time(d["created_at"]),
            short_time(d["replayed_at"]),
            Text((d["detail"] or "")[:80]),
        )
    console.print(table)


def _arguments(message: dict[str, Any]) -> str:
    """A stored message's (masked) arguments: ``'a', 2, key=value``."""
    parts = [compact(message.get("args") or []), compact(message.get("kwargs") or {})]
    return ", ".join(part for part in parts if part)


@dead_letters_app.command("replay")
def replay_command(
    dead_letter_id: Annotated[int, typer.Argument(help="the dead letter's id")],
    app_option: AppOption = None,
) -> None:
    """Publish a dead letter again, keeping its idempotency key and correlation id."""
    from sandbox_platform.ops.deadletters import replay_dead_letter

    settings = cli_settings()
    url = settings.active_database_url
    module = app_module(app_option, settings)
    task_id = replay_dead_letter(load_app(module, settings), url, dead_letter_id)
    detail = {"replay_task_id": task_id, "app": module}
    audit_action(url, "dead_letter.replay", str(dead_letter_id), detail)
    console.print(f"dead letter {dead_letter_id} replayed as task {task_id}")


def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    app_option: AppOption = None,
) -> None:
    """The platform's status: readiness, heartbeat, governor, queue, jobs, alerts."""
    from sandbox_platform.core.redis_client import get_redis, redis_url
    from sandbox_platform.ops.status import platform_status

    settings = cli_settings()
    app = load_app(app_module(app_option, settings), settings)
    status = platform_status(settings, app, get_redis(redis_url(settings)))
    if as_json:
        print(json.dumps(status, indent=2, default=str))
    else:
        print_status(status, console)


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
    settings = cli_settings()
    values = settings.typed_public_dict()
    broker = broker_url_in_use(settings)
    if as_json:
        print(json.dumps({**values, "broker_url_in_use": broker}, indent=2))
        return
    table = new_table("setting", "value")
    for key, value in values.items():
        add_row(table, f"SANDBOX_PLATFORM_{key.upper()}", "" if value is None else str(value))
    add_row(table, "(broker URL in use)", broker)
    console.print(table)


def broker_url_in_use(settings: Settings) -> str:
    """The broker URL Celery will use, masked; never starts the embedded Redis to say so."""
    from sandbox_platform.broker.celery_config import celery_config
    from sandbox_platform.core.redaction import redact_value
    from sandbox_platform.core.redis_client import celery_url

    if settings.redis_url is not None:
        return redact_value(str(celery_config(settings)["broker_url"]))
    if settings.broker_url is not None:  # what celery_config would say, without the embedded
        return redact_value(celery_url(settings.broker_url))
    return f"embedded redis-server (unix socket in {settings.data_dir})"
