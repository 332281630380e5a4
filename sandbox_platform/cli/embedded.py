"""``embedded status`` and ``embedded stop``: the embedded redis-server of the data dir."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from sandbox_platform.cli.common import cli_settings
from sandbox_platform.core.embedded import embedded_status, stop_embedded_redis

__all__ = ["embedded_app"]

embedded_app = typer.Typer(
    no_args_is_help=True,
    help="The embedded redis-server (used when SANDBOX_PLATFORM_REDIS_URL is not set).",
)


@embedded_app.command("status")
def status(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Whether one runs in the data dir: its socket, pid, who started it, who uses it.

    Exit 0 when it runs, 1 when it does not.
    """
    settings = cli_settings()
    found = embedded_status(settings.data_dir)
    note = None if settings.embedded_redis else "not used: SANDBOX_PLATFORM_REDIS_URL is set"
    if as_json:
        print(json.dumps({**found.to_dict(), "note": note}, indent=2))
    elif not found.running:
        print(f"embedded redis-server: not running (socket {found.socket})")
    else:
        owner = found.owner
        by = (
            f"{owner.get('command')} (pid {owner.get('pid')}, at {owner.get('started_at')})"
            if owner
            else "unknown"
        )
        users = ", ".join(str(pid) for pid in found.users) or "none"
        print(f"embedded redis-server: running, pid {found.pid}, socket {found.socket}")
        print(f"started by: {by}")
        print(f"used by processes: {users}")
    if note and not as_json:
        print(f"note: {note}")
    raise typer.Exit(0 if found.running else 1)


@embedded_app.command("stop")
def stop() -> None:
    """Stop the embedded redis-server of the data dir (its data is not kept)."""
    settings = cli_settings()
    found = embedded_status(settings.data_dir)
    if not stop_embedded_redis(settings.data_dir):
        print(f"embedded redis-server: not running (socket {found.socket})")
        return
    print(f"embedded redis-server stopped (pid {found.pid}, socket {found.socket})")
