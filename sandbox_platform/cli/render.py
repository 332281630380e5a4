"""What the operator commands share: JSON on stdout, one-line errors, readable table cells.

Nothing heavy is imported at module level (sqlalchemy is imported inside
:func:`reading_database`), so ``sandbox-platform --help`` stays fast.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sandbox_platform.core.redaction import redact_value

__all__ = [
    "EXIT_USAGE",
    "add_row",
    "ago",
    "audit_action",
    "compact",
    "fail",
    "new_table",
    "operator_name",
    "print_json",
    "reading_database",
    "short_time",
    "stdout_console",
]

#: exit code of a usage problem (a bad number, an unknown severity), as click uses
EXIT_USAGE = 2
_MAX_CELL = 120
#: width of tables written to a file or a pipe (rich's default there is 80 columns)
PIPE_WIDTH = 200


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``sandbox-platform: <message>`` on stderr (one line) and exit with ``code``."""
    line = " ".join(message.split())
    print(f"sandbox-platform: {line}", file=sys.stderr, flush=True)
    raise typer.Exit(code)


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout (times and unknown objects as strings)."""
    print(json.dumps(value, indent=2, default=str), flush=True)


def short_time(iso: str | None, *, millis: bool = False) -> str:
    """``2024-05-01T12:00:00.123456+00:00`` -> ``2024-05-01 12:00:00`` (``.123`` with
    ``millis``); None -> ``""``."""
    if not iso:
        return ""
    text = iso[:19].replace("T", " ")
    if millis:
        text += iso[19:23] if iso[19:20] == "." else ".000"
    return text


def stdout_console() -> Console:
    """The console for reports on stdout: the terminal's width, or wide in a pipe."""
    wide = not sys.stdout.isatty() and not os.environ.get("COLUMNS")
    return Console(width=PIPE_WIDTH if wide else None)


def new_table(*headers: str, title: str | None = None) -> Table:
    """A table whose long cells wrap (fold) instead of being cut with an ellipsis."""
    table = Table(title=Text(title) if title else None)
    for header in headers:
        table.add_column(header, overflow="fold")
    return table


def add_row(table: Table, *cells: str | Text) -> None:
    """Add a row; text is shown as it is (``[...]`` in a task name is not rich markup)."""
    table.add_row(*(Text(cell) if isinstance(cell, str) else cell for cell in cells))


def ago(seconds: float | None) -> str:
    """``3.2s ago``, ``never`` for None."""
    return "never" if seconds is None else f"{seconds:.1f}s ago"


def compact(value: Any, limit: int = _MAX_CELL) -> str:
    """A table cell for a value: ``key=value, ...``, lists as ``[a, b]``, never JSON braces.

    The value is shown as given: pass values that are already redacted. Long text is cut
    at ``limit`` characters.
    """
    text = _compact(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _compact(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return ", ".join(f"{key}={_nested(item)}" for key, item in value.items())
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return ", ".join(_nested(item) for item in value)
    return str(value)


def _nested(value: Any) -> str:
    if isinstance(value, Mapping):
        return f"({_compact(value)})"
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return f"[{_compact(value)}]"
    return repr(value) if isinstance(value, str) else str(value)


def operator_name() -> str:
    """Who runs this command (the OS user), for audit events."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in the environment or the passwd database
        return f"uid:{os.getuid()}"


@contextmanager
def reading_database(database_url: str) -> Iterator[None]:
    """Turn a database that cannot be read into one line and exit code 1."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except SQLAlchemyError as exc:
        cause = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        fail(
            f"cannot read the database {redact_value(database_url)}: {redact_value(cause)} "
            "(is it migrated? sandbox-platform db upgrade)"
        )


def audit_action(database_url: str, action: str, target: str, detail: dict[str, Any]) -> int:
    """Record what the operator just did (source ``cli``, actor the OS user); its id.

    The action is already done, so a database failure says so in its one line (exit 1).
    """
    from sqlalchemy.exc import SQLAlchemyError

    from sandbox_platform.db.audit import record_audit

    try:
        return record_audit(
            database_url,
            actor=operator_name(),
            action=action,
            target=target,
            source="cli",
            detail=detail,
        )
    except SQLAlchemyError as exc:
        cause = redact_value(str(getattr(exc, "orig", None) or exc).splitlines()[0])
        fail(f"{action} {target} was done, but its audit event was not stored: {cause}")
