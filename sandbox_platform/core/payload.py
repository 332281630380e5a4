"""Enqueue-side checks of a job's arguments: JSON-serialisable and within the size limit."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sandbox_platform.core.errors import PayloadError

__all__ = ["check_payload"]


def _offender(value: Any, path: str = "") -> str:
    """Where in ``value`` the first non-JSON value sits, e.g. ``kwargs['when']``."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool) and key is not None:
                return f"{path} key {key!r} ({type(key).__name__})"
            found = _offender(item, f"{path}[{key!r}]")
            if found:
                return found
        return ""
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _offender(item, f"{path}[{index}]")
            if found:
                return found
        return ""
    if value is None or isinstance(value, str | int | float | bool):
        return ""
    return f"{path} ({type(value).__name__})"


def check_payload(
    task_name: str, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None, limit: int
) -> int:
    """Raise :class:`PayloadError` unless the arguments encode as JSON within ``limit`` bytes.

    Returns the encoded size.
    """
    body = {"args": list(args or ()), "kwargs": dict(kwargs or {})}
    try:
        encoded = json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        where = _offender(body["args"], "args") or _offender(body["kwargs"], "kwargs")
        raise PayloadError(
            f"{task_name}: arguments are not JSON-serialisable"
            f"{' at ' + where if where else ''}: {exc}"
        ) from None
    if len(encoded) > limit:
        raise PayloadError(
            f"{task_name}: arguments are {len(encoded)} bytes as JSON, over the limit of "
            f"{limit} (SANDBOX_PLATFORM_PAYLOAD_LIMIT_BYTES); pass a reference instead"
        )
    return len(encoded)
