"""``alerts list|tail``, ``dry-runs list``, ``jobs show``: what the platform recorded.

Everything is read through :mod:`sandbox_platform.ops.records`, which masks secrets for
display. Human output is rich tables (``alerts tail`` prints one line per alert as they are
stored); ``--json`` prints JSON on stdout (``alerts tail --json``: one object per line).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from types import MappingProxyType
from typing import Annotated, Any

import typer
from rich.text import Text

from sandbox_platform.cli.common import cli_settings
from sandbox_platform.cli.render import (
    EXIT_USAGE,
    add_row,
    compact,
    fail,
    new_table,
    print_json,
    reading_database,
    short_time,
    stdout_console,
)

__all__ = ["alerts_app", "dry_runs_app", "jobs_app"]

alerts_app = typer.Typer(no_args_is_help=True, help="Alerts the platform raised.")
dry_runs_app = typer.Typer(no_args_is_help=True, help="Irreversible calls intercepted.")
jobs_app = typer.Typer(
    no_args_is_help=True,
    help="One job's story, by task id, correlation id or idempotency key.",
)
console = stdout_console()

#: alerts read per poll of ``alerts tail`` (the most ``ops.records`` hands out at once): when
#: more arrive between two polls, only the newest this many are printed
TAIL_BATCH = 1000
_SEVERITY_STYLE = MappingProxyType(
    {"info": "cyan", "warning": "yellow", "error": "red", "critical": "bold red"}
)

SeverityOption = Annotated[
    str | None, typer.Option(help="lowest severity shown: info, warning, error, critical")
]
KindOption = Annotated[str | None, typer.Option(help="only this kind (e.g. task_failed)")]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON")]


def _check_severity(severity: str | None) -> str | None:
    """The severity's label, or one line and exit 2 when it is unknown."""
    if severity is None:
        return None
    from sandbox_platform.ops.alerts import Severity

    try:
        return Severity.parse(severity).label
    except ValueError as exc:
        fail(f"--severity: {exc}", EXIT_USAGE)


def _alerts(
    url: str, severity: str | None, kind: str | None, limit: int, after_id: int | None = None
) -> list[dict[str, Any]]:
    from sandbox_platform.ops.records import list_alerts

    with reading_database(url):
        return list_alerts(url, severity=severity, kind=kind, after_id=after_id, limit=limit)


def _severity_text(label: str) -> Text:
    return Text(label, style=_SEVERITY_STYLE.get(label, ""))


@alerts_app.command("list")
def alerts_list(
    severity: SeverityOption = None,
    kind: KindOption = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="newest N")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List stored alerts, newest first."""
    alerts = _alerts(cli_settings().active_database_url, _check_severity(severity), kind, limit)
    if as_json:
        print_json(alerts)
        return
    table = new_table("id", "time", "severity", "kind", "message", "correlation id", "suppressed")
    for alert in alerts:
        add_row(
            table,
            str(alert["id"]),
            short_time(alert["created_at"]),
            _severity_text(alert["severity"]),
            alert["kind"],
            Text(alert["message"]),
            alert["correlation_id"] or "",
            str(alert["suppressed"] or ""),
        )
    console.print(table)
    if not alerts:
        console.print("no alerts", style="dim")


def _print_alert(alert: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(alert, default=str))
        return
    line = Text.assemble(
        f"{short_time(alert['created_at'])}  #{alert['id']}  ",
        _severity_text(f"{alert['severity']:8}"),
        f"  {alert['kind']}  {alert['message']}",
    )
    if alert["correlation_id"]:
        line.append(f"  correlation={alert['correlation_id']}", style="dim")
    if alert["suppressed"]:
        line.append(f"  (+{alert['suppressed']} suppressed)", style="dim")
    console.print(line)


@alerts_app.command("tail")
def alerts_tail(
    severity: SeverityOption = None,
    kind: KindOption = None,
    limit: Annotated[int, typer.Option(min=0, max=1000, help="newest N printed first")] = 10,
    interval: Annotated[float, typer.Option(min=0.05, help="seconds between polls")] = 1.0,
    count: Annotated[
        int | None, typer.Option(min=1, help="exit after N new alerts (default: never)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """Print the newest alerts, then follow new ones as they are stored (Ctrl-C ends it)."""
    label = _check_severity(severity)
    url = cli_settings().active_database_url
    try:
        newest = _alerts(url, label, kind, max(limit, 1))
        for alert in reversed(newest[:limit]):
            _print_alert(alert, as_json)
        last_id = newest[0]["id"] if newest else 0
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    stop = _stop_on_interrupt()
    print("following new alerts (Ctrl-C to stop)", file=sys.stderr, flush=True)
    _follow(url, (label, kind), last_id, (interval, stop), count, as_json)


def _stop_on_interrupt() -> threading.Event:
    """An event Ctrl-C (SIGINT) and SIGTERM set: the follow loop ends between polls, never
    with an exception in the middle of a database call (the driver may hang on one)."""
    stop = threading.Event()

    def handle(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop


def _follow(
    url: str,
    filters: tuple[str | None, str | None],
    last_id: int,
    pace: tuple[float, threading.Event],
    count: int | None,
    as_json: bool,
) -> None:
    """Poll for alerts newer than ``last_id`` (``filters``: severity, kind) every ``pace[0]``
    seconds until ``count`` were printed or ``pace[1]`` is set."""
    interval, stop = pace
    seen = 0
    while count is None or seen < count:
        if stop.wait(interval):
            return
        fresh = list(reversed(_alerts(url, *filters, TAIL_BATCH, after_id=last_id)))
        for alert in fresh[: None if count is None else count - seen]:
            _print_alert(alert, as_json)
            seen += 1
        if fresh:
            last_id = fresh[-1]["id"]
        sys.stdout.flush()


@dry_runs_app.command("list")
def dry_runs_list(
    action: Annotated[str | None, typer.Option(help="only this action")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="newest N")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List intercepted irreversible calls (sandbox mode), newest first, arguments masked."""
    from sandbox_platform.ops.records import list_dry_runs

    url = cli_settings().active_database_url
    with reading_database(url):
        events = list_dry_runs(url, action=action, limit=limit)
    if as_json:
        print_json(events)
        return
    table = new_table("id", "time", "action", "function", "arguments", "task id", "correlation id")
    for event in events:
        add_row(
            table,
            str(event["id"]),
            short_time(event["created_at"]),
            event["action"],
            event["function"],
            Text(compact(event["arguments"])),
            event["task_id"] or "",
            event["correlation_id"] or "",
        )
    console.print(table)
    if not events:
        console.print("no dry-run events", style="dim")


def _normalised(entry: dict[str, Any]) -> dict[str, Any]:
    """A timeline entry with its free text (a run's error, a dead letter's detail, an
    alert's message) masked for display, whatever the writer did."""
    from sandbox_platform.core.redaction import redact_value

    for key in ("error", "detail", "message"):
        if isinstance(entry.get(key), str):
            entry[key] = redact_value(entry[key])
    return entry


def _summary(entry: dict[str, Any]) -> str:
    """One line on what a timeline entry says."""
    kind = entry["kind"]
    if kind == "run":
        text = f"{entry['task_name']}: {entry['state']} (attempt {entry['attempt']})"
        if entry["duration_ms"] is not None:
            text += f" in {entry['duration_ms']:.0f} ms"
        return text + (f" — {entry['error']}" if entry["error"] else "")
    if kind == "dry_run":
        return f"{entry['action']} {entry['function']}({compact(entry['arguments'])})"
    if kind == "alert":
        return f"{entry['severity']} {entry.get('alert_kind', '')}: {entry['message']}"
    if kind == "dead_letter":
        detail = f": {entry['detail']}" if entry["detail"] else ""
        return f"{entry['task_name']} dead-lettered ({entry['reason']}){detail}"
    if kind == "effect":
        return f"effect {entry['idempotency_key']} (fencing token {entry['fencing_token']})"
    if kind == "duplicate":
        first = entry.get("duplicate_of_correlation_id")
        return (
            f"{entry['task_name']}: duplicate of job {entry['duplicate_of']}"
            + (f" (correlation id {first})" if first else "")
            + f", idempotency key {entry['idempotency_key']}"
        )
    return compact({k: v for k, v in entry.items() if k not in ("kind", "at")})


@jobs_app.command("show")
def jobs_show(
    job: Annotated[
        str,
        typer.Argument(
            metavar="ID",
            help="a task id, a correlation id or an idempotency key (<task name>:<key value>)",
        ),
    ],
    as_json: JsonOption = False,
) -> None:
    """One job's story, in time order: runs, retries, dry-run events, alerts, dead letters,
    effects. ID is tried as a task id (the job's correlation id is then shown), a correlation
    id, then an idempotency key as stored (<task name>:<key value>, e.g. shop.charge:order-42).
    Says which matched; exit 1 when nothing does."""
    from sandbox_platform.core.redis_client import get_redis, redis_url
    from sandbox_platform.ops.job_lookup import find_job, nothing_matched

    settings = cli_settings()
    url = settings.active_database_url
    with reading_database(url):
        story = find_job(url, job, lambda: get_redis(redis_url(settings)), settings.key_prefix)
    if story.match is None:
        fail(nothing_matched(job) + (f" ({story.unchecked})" if story.unchecked else ""))
    if not story.entries:
        fail(f"{story.match.describe()}: no records of that job yet")
    entries = [_normalised(entry) for entry in story.entries]
    if as_json:
        print_json(
            {
                "matched": story.match.to_dict(),
                "task_id": story.match.task_id,
                "correlation_id": story.correlation_id,
                "entries": entries,
                "tree": story.tree,
            }
        )
        return
    title = (
        f"correlation id {story.correlation_id}"
        if story.correlation_id
        else f"task id {story.match.task_id}"
    )
    console.print(Text(story.match.describe()))
    table = new_table("time", "kind", "task id", "what", title=title)
    for entry in entries:
        task_id = Text(entry.get("task_id") or "", style="bold" if entry.get("matched_job") else "")
        add_row(
            table,
            short_time(entry["at"], millis=True),
            entry["kind"].replace("_", " "),
            task_id,
            Text(_summary(entry)),
        )
    console.print(table)
    _print_tree(story.tree)


def _print_tree(tree: list[dict[str, Any]]) -> None:
    """The jobs' tree, one line a job, indented under its parent (the matched one bold)."""
    if not any(node["parent_id"] or node["children"] for node in tree):
        return  # a lone job: the table says it all
    console.print(Text("job tree (root first; a child under its parent)", style="bold"))
    for node in tree:
        what = node["task_name"] or "(no run recorded yet)"
        state = f" {node['state']}" if node["state"] else ""
        line = Text("  " * node["depth"] + ("└─ " if node["depth"] else ""))
        line.append(f"{what} {node['task_id']}{state}", style="bold" if node["matched_job"] else "")
        if node["parent_id"]:
            line.append(f"  parent {node['parent_id']}", style="dim")
        console.print(line)
