"""``governor show|set-limit``: the quotas every worker shares, read and changed.

``set-limit`` applies at the next decision of every process (the limits live in Redis) and
records an audit event naming the OS user who ran it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sandbox_platform.cli.common import cli_settings
from sandbox_platform.cli.render import (
    EXIT_USAGE,
    add_row,
    audit_action,
    fail,
    new_table,
    print_json,
    stdout_console,
)

if TYPE_CHECKING:
    from sandbox_platform.coordination.governor import Governor
    from sandbox_platform.core.settings import Settings

__all__ = ["governor_app"]

governor_app = typer.Typer(no_args_is_help=True, help="Quotas shared by every worker.")
console = stdout_console()


def _governor(settings: Settings) -> Governor:
    from sandbox_platform.coordination.governor import Governor
    from sandbox_platform.core.redis_client import get_redis, redis_url

    return Governor(get_redis(redis_url(settings)), settings.key_prefix)


def governor_report(governor: Governor) -> dict[str, dict[str, Any]]:
    """Per resource with a limit: its limits (each with ``tokens`` now), admitted, denials."""
    report: dict[str, dict[str, Any]] = {}
    for resource, stats in governor.stats().items():
        tokens = governor.tokens(resource)
        limits = [{**limit, "tokens": tokens.get(limit["name"])} for limit in stats["limits"]]
        report[resource] = {
            "limits": limits,
            "admitted": stats["admitted"],
            "denials": stats["denials"],
        }
    return report


def _rate(limit: dict[str, Any]) -> str:
    return f"{limit['limit']} per {limit['per_seconds']:g}s"


@governor_app.command("show")
def show(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Every resource with a configured limit: limits, tokens now, admitted and denied."""
    report = governor_report(_governor(cli_settings()))
    if as_json:
        print_json(report)
        return
    table = new_table("resource", "limit", "rate", "capacity", "tokens now", "admitted", "denied")
    for resource, entry in report.items():
        for index, limit in enumerate(entry["limits"]):
            first = index == 0
            tokens = limit["tokens"]
            add_row(
                table,
                resource if first else "",
                limit["name"],
                _rate(limit),
                str(limit["capacity"]),
                "" if tokens is None else f"{tokens:.2f}",
                str(entry["admitted"]) if first else "",
                str(entry["denials"]) if first else "",
            )
    console.print(table)
    if not report:
        console.print("no resource has a configured limit", style="dim")


def _positive_int(what: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        fail(f"{what} must be a positive integer, got {text!r}", EXIT_USAGE)
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        fail(f"PER_SECONDS must be a positive number of seconds, got {text!r}", EXIT_USAGE)
    return value


@governor_app.command("set-limit", context_settings={"ignore_unknown_options": True})
def set_limit(
    resource: Annotated[
        str, typer.Argument(metavar="RESOURCE", help="the resource, e.g. stripe or api:42")
    ],
    limit: Annotated[str, typer.Argument(metavar="LIMIT", help="tokens per period")],
    per_seconds: Annotated[str, typer.Argument(metavar="PER_SECONDS", help="the period")],
    name: Annotated[
        str | None, typer.Option(help="the limit's name (default per_<PER_SECONDS>s)")
    ] = None,
    capacity: Annotated[
        str | None, typer.Option(metavar="N", help="burst size in tokens (default LIMIT)")
    ] = None,
) -> None:
    """Allow LIMIT tokens per PER_SECONDS for RESOURCE (replaces the limit of that name)."""
    tokens = _positive_int("LIMIT", limit)
    seconds = _positive_seconds(per_seconds)
    burst = None if capacity is None else _positive_int("--capacity", capacity)
    if not resource.strip():
        fail("RESOURCE must not be empty", EXIT_USAGE)
    settings = cli_settings()
    governor = _governor(settings)
    before = {lim.name: vars(lim) for lim in governor.limits(resource)}
    try:
        done = governor.set_limit(resource, tokens, seconds, name=name, capacity=burst)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    detail = {**vars(done), "previous": before.get(done.name)}
    audit_id = audit_action(settings.active_database_url, "governor.set_limit", resource, detail)
    console.print(
        f"{resource}: limit {done.name} is {tokens} per {done.per_seconds:g}s "
        f"(capacity {done.capacity}); audit event {audit_id}",
        markup=False,
        highlight=False,
    )
