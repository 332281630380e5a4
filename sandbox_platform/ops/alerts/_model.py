"""Severity and the Alert record every sink receives (already redacted, JSON-safe)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any

from sandbox_platform.core.context import current_correlation_id
from sandbox_platform.core.redaction import redact, redact_value
from sandbox_platform.db.models import utcnow

__all__ = ["Alert", "Severity"]


class Severity(IntEnum):
    """Ordered severities; the values are the stdlib logging levels."""

    INFO = 20
    WARNING = 30
    ERROR = 40
    CRITICAL = 50

    @property
    def label(self) -> str:
        """Lower-case name: ``"error"``."""
        return self.name.lower()

    def __str__(self) -> str:
        return self.label

    @classmethod
    def parse(cls, value: Severity | str | int) -> Severity:
        """``Severity.ERROR``, ``"error"``, ``"ERROR"``, ``"warn"`` or ``40``."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            text = value.strip().upper()
            text = {"WARN": "WARNING", "CRIT": "CRITICAL", "FATAL": "CRITICAL"}.get(text, text)
            try:
                return cls[text]
            except KeyError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                pass
        choices = ", ".join(s.label for s in cls)
        raise ValueError(f"unknown alert severity {value!r}; expected one of {choices}")


def _json_safe(value: Any) -> dict[str, Any]:
    """A plain-JSON copy (unknown objects become ``str``) so every sink can store it."""
    result = json.loads(json.dumps(value, default=str))
    if not isinstance(result, dict):
        raise ValueError(f"alert context must be a mapping, got {type(value).__name__}")
    return result


@dataclass(frozen=True)
class Alert:
    """One alert. ``context`` and ``message`` are redacted on construction.

    ``key`` makes the alert throttled: the same ``kind`` + ``key`` is sent once per window
    across the cluster. ``suppressed`` is set by the dispatcher on the first alert sent
    after a window: how many identical alerts were held back before it.
    """

    severity: Severity
    kind: str
    message: str
    context: dict[str, Any] = field(default_factory=dict)
    correlation_id: str | None = field(default_factory=current_correlation_id)
    key: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    suppressed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "severity", Severity.parse(self.severity))
        if not isinstance(self.kind, str) or not self.kind.strip():
            raise ValueError(f"alert kind must be a non-empty string, got {self.kind!r}")
        if len(self.kind) > 64:
            raise ValueError(f"alert kind is limited to 64 characters: {self.kind[:70]!r}")
        object.__setattr__(self, "message", redact_value(str(self.message)))
        object.__setattr__(self, "context", _json_safe(redact(dict(self.context))))
        if self.suppressed < 0:
            raise ValueError(f"suppressed must be >= 0, got {self.suppressed}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape used by webhooks and status pages."""
        return {
            "severity": self.severity.label,
            "kind": self.kind,
            "message": self.message,
            "context": self.context,
            "correlation_id": self.correlation_id,
            "key": self.key,
            "suppressed": self.suppressed,
            "created_at": self.created_at.isoformat(),
        }
