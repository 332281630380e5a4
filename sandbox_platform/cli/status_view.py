"""``status`` for a person: the platform status dict as sections of rich tables.

The dict is :func:`sandbox_platform.ops.status.platform_status`'s (``status --json`` prints
it unchanged); this module only lays it out, with no JSON inside a cell.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.text import Text

from sandbox_platform.cli.render import add_row, ago, compact, new_table

__all__ = ["print_status"]


def print_status(status: Mapping[str, Any], console: Console) -> None:
    """Readiness, heartbeat and workers, governor, then the counters."""
    _readiness(status.get("readiness") or {}, console)
    _heartbeat(status.get("heartbeat") or {}, console)
    _governor(status.get("governor") or {}, console)
    _counters(status, console)


def _state(ok: bool) -> Text:
    return Text("GO", style="green") if ok else Text("NO-GO", style="red")


def _readiness(readiness: Mapping[str, Any], console: Console) -> None:
    verdict = str(readiness.get("verdict") or ("GO" if readiness.get("ready") else "NO-GO"))
    reasons = readiness.get("reasons") or []
    color = "green" if verdict == "GO" else "red"
    line = Text.assemble("Readiness: ", (verdict, f"bold {color}"))
    if reasons:
        line.append(f" ({', '.join(str(r) for r in reasons)})")
    console.print(line)
    details: Mapping[str, Any] = readiness.get("details") or {}
    table = new_table("check", "state", "code", "message")
    for name, passed in (readiness.get("checks") or {}).items():
        detail = details.get(name) or {}
        add_row(
            table, name, _state(bool(passed)), str(detail.get("code") or ""), Text(_text(detail))
        )
    console.print(table)


def _text(detail: Mapping[str, Any]) -> str:
    return compact(detail.get("message") or "", limit=200)


def _heartbeat(heartbeat: Mapping[str, Any], console: Console) -> None:
    healthy = "healthy" if heartbeat.get("healthy") else "STALE"
    console.print(
        Text(
            f"\nHeartbeat: last tick {ago(heartbeat.get('last_tick_age'))} ({healthy}); "
            f"{heartbeat.get('ticks', 0)} ticks, one every {heartbeat.get('interval', 0):g}s, "
            f"stale after {heartbeat.get('max_age', 0):g}s"
        )
    )
    workers: Mapping[str, float] = heartbeat.get("workers") or {}
    table = new_table("worker", "last seen")
    for name, age in sorted(workers.items()):
        add_row(table, name, ago(age))
    if workers:
        console.print(table)
    else:
        console.print(Text("no live worker", style="yellow"))


def _governor(governor: Mapping[str, Any], console: Console) -> None:
    console.print(Text("\nGovernor"))
    if not governor:
        console.print(Text("no resource has a configured limit", style="dim"))
        return
    table = new_table("resource", "limit", "rate", "capacity", "admitted", "denied")
    for resource, entry in governor.items():
        limits = entry.get("limits") or [{}]
        for index, limit in enumerate(limits):
            first = index == 0
            add_row(
                table,
                resource if first else "",
                str(limit.get("name", "")),
                f"{limit.get('limit', '')} per {limit.get('per_seconds', 0):g}s",
                str(limit.get("capacity", "")),
                str(entry.get("admitted", 0)) if first else "",
                str(entry.get("denials", 0)) if first else "",
            )
    console.print(table)


_COUNTERS = (
    ("worker_queue_length", "jobs waiting in the queue"),
    ("completed_jobs", "completed jobs"),
    ("alerts", "alerts stored"),
    ("idempotent_operations", "idempotent operations"),
)


def _counters(status: Mapping[str, Any], console: Console) -> None:
    table = new_table("", "count")
    table.show_header = False
    for key, label in _COUNTERS:
        if key in status:
            add_row(table, label, str(status[key]))
    console.print()
    console.print(table)
