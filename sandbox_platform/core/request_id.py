"""The correlation id of an incoming HTTP request, chosen from its headers.

``X-Request-ID`` when it is a safe id (1 to :data:`MAX_REQUEST_ID_LENGTH` characters of
``[A-Za-z0-9._:-]``); else, when that header is absent, the trace id of a valid W3C
``traceparent``; else a fresh id. An unsafe ``X-Request-ID`` is replaced by a fresh id: it is
never bound, stored or logged as sent (it could carry log injection or a secret).
"""

from __future__ import annotations

import re

from sandbox_platform.core.context import new_correlation_id

__all__ = [
    "MAX_REQUEST_ID_LENGTH",
    "REQUEST_ID_HEADER",
    "TRACEPARENT_HEADER",
    "choose_request_id",
    "safe_request_id",
    "trace_id_from_traceparent",
]

REQUEST_ID_HEADER = "X-Request-ID"
TRACEPARENT_HEADER = "traceparent"
MAX_REQUEST_ID_LENGTH = 128

_SAFE_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_REQUEST_ID_LENGTH}}}")
# version - trace id - parent id - flags, then (versions after 00 only) more fields
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


def safe_request_id(value: str | None) -> str | None:
    """``value`` when it is a safe request id, else None."""
    if value is None or _SAFE_ID.fullmatch(value) is None:
        return None
    return value


def trace_id_from_traceparent(value: str | None) -> str | None:
    """The trace id (32 lowercase hex digits) of a valid W3C ``traceparent``, else None.

    Invalid per the W3C Trace Context: version ``ff``, an all-zero trace or parent id,
    uppercase hex, and any field after the flags in a version ``00`` header."""
    if value is None:
        return None
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return None
    version, trace_id, parent_id, _flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return trace_id


def choose_request_id(request_id: str | None, traceparent: str | None) -> tuple[str, bool]:
    """The correlation id for a request with these headers (None: header absent), and
    whether an unsafe ``X-Request-ID`` was replaced."""
    if request_id:
        safe = safe_request_id(request_id)
        return (safe, False) if safe is not None else (new_correlation_id(), True)
    return trace_id_from_traceparent(traceparent) or new_correlation_id(), False
