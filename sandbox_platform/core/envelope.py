"""What a sealed argument looks like in a message (no cryptography here: the redactor and
the readers of stored messages recognise it cheaply; sealing is core/sealing.py)."""

from __future__ import annotations

from typing import Any

__all__ = ["ENVELOPE_MARK", "ENVELOPE_VERSION", "envelope_key_id", "is_envelope"]

ENVELOPE_MARK = "$sp_secret"
ENVELOPE_VERSION = 1


def is_envelope(value: Any) -> bool:
    """Whether ``value`` is an envelope (a decoded message holds plain dicts)."""
    return type(value) is dict and value.get(ENVELOPE_MARK) == ENVELOPE_VERSION


def envelope_key_id(value: Any) -> str | None:
    """The key id of an envelope, or None for any other value."""
    if not is_envelope(value):
        return None
    key_id = value.get("kid")
    return key_id if isinstance(key_id, str) else ""
