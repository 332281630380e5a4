"""``queues migrate``: move jobs a 0.1 deployment left on unqualified queues."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from sandbox_platform.cli.common import AppOption, app_module, cli_settings, load_app
from sandbox_platform.core.broker_kind import BrokerKind

__all__ = ["queues_app"]

queues_app = typer.Typer(no_args_is_help=True, help="The broker's queues.")
console = Console()


@queues_app.command("migrate")
def migrate(
    app_option: AppOption = None,
    queue: Annotated[
        list[str] | None, typer.Option(help="an unqualified queue (default: the app's queues)")
    ] = None,
) -> None:
    """Move jobs waiting on unqualified (0.1) queues to the queue of their own mode.

    Run it after the 0.1 publishers and workers are stopped (and their unacknowledged jobs
    are back, after the visibility timeout). Running it again is harmless.
    """
    from sandbox_platform.broker.queues import base_name
    from sandbox_platform.compat.legacy_queues import migrate_legacy_queues
    from sandbox_platform.core.redis_client import broker_redis
    from sandbox_platform.ops.backlog import known_queues

    settings = cli_settings()
    if settings.broker_kind is BrokerKind.RABBITMQ:
        Console(stderr=True).print(
            "queues migrate moves jobs between Redis lists; the broker is RabbitMQ "
            "(0.1 ran on Redis only): nothing to migrate (see docs/brokers.md)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)
    names = queue or [
        base_name(q) for q in known_queues(load_app(app_module(app_option, settings), settings))
    ]
    moved = migrate_legacy_queues(broker_redis(settings), names, settings.mode.value)
    for item in moved:
        console.print(
            f"{item.queue}: {item.sandbox} job(s) to {item.queue}.sandbox, "
            f"{item.live} to {item.queue}.live",
            soft_wrap=True,
        )
