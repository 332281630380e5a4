"""Readiness alerts on verdict changes only: a probe every few seconds is not a page each.

``sandbox-platform readiness`` runs as a Kubernetes probe. Each report goes to
:class:`VerdictAlerts`, which swaps the deployment's last verdict in Redis (one key,
``<prefix>:readiness:verdict``, ``SET ... GET``: atomic, so of several probes that see the same
change only one alerts) and alerts on a change:

* to NO-GO, or NO-GO with another set of reasons: ``critical`` ``readiness_no_go``;
* NO-GO back to GO: ``info`` ``readiness_go`` (recorded, below the default webhook threshold).

A verdict that stays the same raises nothing, however long it lasts. A first GO (no earlier
verdict) raises nothing either. When Redis cannot be reached the verdict cannot be compared:
a NO-GO then raises the critical alert through the throttle (once per window), so an outage
still pages, and not on every probe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import redis
import structlog

from sandbox_platform.core.redis_client import REDIS_ERRORS, text
from sandbox_platform.ops.alerts import AlertDispatcher, Severity

__all__ = ["KIND_GO", "KIND_NO_GO", "VerdictAlerts", "verdict_key"]

log = structlog.get_logger(__name__)

KIND_NO_GO = "readiness_no_go"
KIND_GO = "readiness_go"
#: the key outlives probes that stopped (a deleted deployment) by this much, no more
VERDICT_TTL_SECONDS = 7 * 24 * 3600


class _Report(Protocol):
    @property
    def go(self) -> bool: ...

    @property
    def reasons(self) -> list[str]: ...


def verdict_key(prefix: str) -> str:
    return f"{prefix}:readiness:verdict"


def _state(go: bool, reasons: Sequence[str]) -> str:
    return "GO" if go else "NO-GO:" + ",".join(sorted(set(reasons)))


def _reasons(state: str | None) -> list[str]:
    if not state or not state.startswith("NO-GO:"):
        return []
    return [r for r in state.removeprefix("NO-GO:").split(",") if r]


class VerdictAlerts:
    """An ``on_report`` for :class:`~sandbox_platform.ops.readiness.ReadinessChecker`."""

    def __init__(self, dispatcher: AlertDispatcher, client: redis.Redis, prefix: str) -> None:
        self.dispatcher = dispatcher
        self.client = client
        self.key = verdict_key(prefix)

    def __call__(self, report: _Report) -> None:
        state = _state(report.go, report.reasons)
        try:
            raw = self.client.set(self.key, state, ex=VERDICT_TTL_SECONDS, get=True)
        except REDIS_ERRORS as exc:
            log.warning("readiness verdict not comparable (Redis)", error=str(exc))
            if not report.go:
                self._no_go(report.reasons, [], throttle=True)
            return
        previous = text(raw) if raw is not None else None
        if previous == state:
            return
        if not report.go:
            self._no_go(report.reasons, _reasons(previous), throttle=False)
        elif previous is not None and previous.startswith("NO-GO"):
            self.dispatcher.alert(
                Severity.INFO,
                KIND_GO,
                f"readiness back to GO (was NO-GO: {', '.join(_reasons(previous))})",
                throttle=False,
                previous_reasons=_reasons(previous),
            )

    def _no_go(self, reasons: Sequence[str], previous: list[str], *, throttle: bool) -> None:
        was = f" (was NO-GO: {', '.join(previous)})" if previous else ""
        self.dispatcher.alert(
            Severity.CRITICAL,
            KIND_NO_GO,
            f"readiness NO-GO: {', '.join(reasons)}{was}",
            key="readiness" if throttle else None,
            throttle=throttle,
            reasons=list(reasons),
            previous_reasons=previous,
        )
