"""The supervisor's side of time limits on solo consumers: read each consumer's deadline file
(written by the time-limit guard while a job runs) and say which job is overdue."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["DeadlineWatch"]

#: seconds past a deadline before a consumer is stopped
GRACE_SECONDS = 1.0


class DeadlineWatch:
    """``on_overdue(info)`` is called for a job past its deadline; the supervisor then stops
    and restarts its consumer."""

    def __init__(self, directory: Path, on_overdue: Callable[[dict[str, Any]], None]) -> None:
        self.directory = directory
        self.on_overdue = on_overdue

    def overdue(self, pid: int) -> dict[str, Any] | None:
        path = self.directory / f"{pid}.json"
        try:
            info: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if time.time() <= float(info.get("deadline", 0)) + GRACE_SECONDS:
            return None
        return info

    def forget(self, pid: int) -> None:
        with contextlib.suppress(OSError):
            (self.directory / f"{pid}.json").unlink()
