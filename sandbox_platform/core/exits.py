"""Turn a settings problem into one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from sandbox_platform.core.errors import SettingsError

__all__ = ["EXIT_SETTINGS", "exit_on_settings_error", "settings_error_exit"]

EXIT_SETTINGS = 2
T = TypeVar("T")


def settings_error_exit(error: SettingsError) -> NoReturn:
    print(f"sandbox-platform: configuration error: {error}", file=sys.stderr)
    raise SystemExit(EXIT_SETTINGS)


def exit_on_settings_error(build: Callable[[], T]) -> T:
    """Call ``build``; on a SettingsError print its one line and exit with code 2."""
    try:
        return build()
    except SettingsError as error:
        settings_error_exit(error)
