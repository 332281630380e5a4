"""The Celery and kombu versions the platform runs on.

The broker layer uses parts of Celery and kombu that are not their public API (the platform's
transport, the event-loop fix, queue naming; see docs/architecture.md), so a version outside
the range below may break it in ways no test has seen. pyproject.toml bounds both packages to
the same range (a unit test compares them). Outside it, a worker refuses to start (one line,
exit code 2) and a producer publishes through kombu's stock Redis channel, with one warning.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType

import celery
import kombu
import structlog

__all__ = ["SUPPORTED", "UNSUPPORTED", "outside_range", "version_tuple", "warn_stock_channel"]

log = structlog.get_logger(__name__)

#: package -> (lowest supported version, first unsupported version)
SUPPORTED: Mapping[str, tuple[tuple[int, int], tuple[int, int]]] = MappingProxyType(
    {"celery": ((5, 7), (5, 8)), "kombu": ((5, 7), (5, 8))}
)


_MODULES = MappingProxyType({"celery": celery, "kombu": kombu})


def version_tuple(text: str) -> tuple[int, int]:
    """``"5.7.0rc1"`` -> ``(5, 7)``; an unreadable version is ``(0, 0)``."""
    parts = [*text.split("."), "0"][:2]
    digits = ["".join(ch for ch in part if ch.isdigit()) or "0" for part in parts]
    return int(digits[0]), int(digits[1])


def _installed() -> dict[str, str]:
    return {name: str(getattr(module, "__version__", "0")) for name, module in _MODULES.items()}


def outside_range() -> str | None:
    """What is installed outside :data:`SUPPORTED`, as one sentence; None when all is in it."""
    found = []
    for name, version in _installed().items():
        low, high = SUPPORTED[name]
        if not low <= version_tuple(version) < high:
            found.append(f"{name} {version} (supported: >={_dotted(low)},<{_dotted(high)})")
    if not found:
        return None
    return f"{' and '.join(found)}: outside the versions sandbox-platform runs on"


def _dotted(version: tuple[int, int]) -> str:
    return ".".join(str(part) for part in version)


#: what this process has installed outside the range (None: nothing)
UNSUPPORTED = outside_range()


@functools.cache
def warn_stock_channel() -> None:
    """Once per process (at its first publish): it publishes through kombu's stock channel."""
    log.warning(f"{UNSUPPORTED}; publishing through kombu's stock Redis channel")
