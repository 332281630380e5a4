"""``readiness``: the GO/NO-GO report as a table or JSON; exit 0 on GO, 1 on NO-GO."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sandbox_platform.cli.common import AppOption, app_module, load_app, readiness_settings
from sandbox_platform.core.extras import configured_missing

if TYPE_CHECKING:
    from sandbox_platform.ops.readiness import Report

__all__ = ["readiness"]

console = Console(stderr=True)


def readiness(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    app_option: AppOption = None,
    timeout: Annotated[
        float | None, typer.Option(help="seconds per check (default: the setting)")
    ] = None,
    skip: Annotated[
        list[str] | None, typer.Option(help="a check not to run (repeatable, or a,b)")
    ] = None,
) -> None:
    """GO/NO-GO: check everything the platform needs; exit 0 on GO, 1 on NO-GO."""
    from sandbox_platform.app.runtime import runtime_for
    from sandbox_platform.core.logging import configure_logging
    from sandbox_platform.ops.readiness import CHECK_NAMES, ReadinessChecker
    from sandbox_platform.ops.readiness_alerts import VerdictAlerts

    skipped = [name.strip() for item in skip or [] for name in item.split(",") if name.strip()]
    unknown = sorted(set(skipped) - set(CHECK_NAMES))
    if unknown:
        raise typer.BadParameter(
            f"unknown check(s) {', '.join(unknown)}; known: {', '.join(CHECK_NAMES)}",
            param_hint="--skip",
        )
    if timeout is not None and timeout <= 0:
        raise typer.BadParameter("must be positive", param_hint="--timeout")
    settings = readiness_settings()
    # to stderr (stdout is the report); the report itself says what INFO lines would
    level = "WARNING" if settings.log_level in ("DEBUG", "INFO") else settings.log_level
    configure_logging(settings.log_format, level)
    notes: list[str] = []
    module = app_module(app_option, settings)
    missing = configured_missing(settings)
    if missing:  # the app would not load: the report says why (EXTRA_MISSING), no alerts
        notes.append(f"{module} not loaded: {missing[0]}")
        checker = ReadinessChecker(settings, None, timeout=timeout, skip=skipped)
    else:
        celery_app = load_app(module, settings, notes)

        def alert(report: Report) -> None:  # on a verdict change only (a probe runs this often)
            runtime = runtime_for(celery_app)
            VerdictAlerts(runtime.alerts, runtime.redis, settings.key_prefix)(report)

        checker = ReadinessChecker(
            settings, celery_app, timeout=timeout, skip=skipped, on_report=alert
        )
    report = checker.run()
    if as_json:
        print(json.dumps({**report.to_dict(), "notes": notes}, indent=2))
    else:
        _print_report(report, notes)
    raise typer.Exit(0 if report.go else 1)


def _print_report(report: Report, notes: list[str]) -> None:
    for note in notes:
        console.print(f"note: {note}", markup=False, highlight=False)
    table = Table("check", "state", "code", "message", "ms")
    for result in report.checks:
        state = "[green]GO[/]" if result.ok else "[red]NO-GO[/]"
        table.add_row(
            result.name, state, result.code, Text(result.message), f"{result.duration_ms:.0f}"
        )
    out = Console()
    out.print(table)
    reasons = f" ({', '.join(report.reasons)})" if report.reasons else ""
    color = "green" if report.go else "red"
    out.print(f"[bold {color}]{report.verdict}[/]{reasons}")
