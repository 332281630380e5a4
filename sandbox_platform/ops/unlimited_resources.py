"""A governor resource used with no limit configured: a warning, once per process.

The governor lets a job through on a resource Redis holds no limit for (nothing to count
against), so a forgotten ``governor set`` is unlimited traffic, silently. Readiness reports
it (``GOVERNOR_LIMIT_MISSING``) for the resources declared in code; this watch catches every
resource at its first admission in each process: a ``warning`` log line and a ``warning``
alert, kind ``governor_limit_missing`` (throttled per resource), then nothing more from that
process for that resource. The check costs one Redis read per resource per process.
"""

from __future__ import annotations

import threading

import structlog

from sandbox_platform.coordination.governor import Governor
from sandbox_platform.guards.events import Events, GovernorAdmitted
from sandbox_platform.ops.alerts import AlertDispatcher, Severity

__all__ = ["KIND", "UnlimitedResourceWatch"]

log = structlog.get_logger(__name__)

KIND = "governor_limit_missing"
_UID = "sandbox_platform.ops.unlimited_resources"


class UnlimitedResourceWatch:
    """Subscribed to ``GovernorAdmitted``: warns at a resource's first unlimited use."""

    def __init__(self, governor: Governor, alerts: AlertDispatcher) -> None:
        self.governor = governor
        self.alerts = alerts
        self._checked: set[str] = set()
        self._lock = threading.Lock()

    def subscribe(self, events: Events) -> UnlimitedResourceWatch:
        events.subscribe(GovernorAdmitted, self.on_admitted, uid=_UID)
        return self

    def on_admitted(self, event: GovernorAdmitted) -> None:
        for resource in event.resources:
            if resource in self._checked:  # the hot path: one set lookup
                continue
            with self._lock:
                if resource in self._checked:
                    continue
                self._checked.add(resource)
            self._check(resource, event.task)

    def _check(self, resource: str, task: str) -> None:
        try:
            limited = bool(self.governor.limits(resource))
        except Exception as exc:  # Redis away: check again at the next admission
            with self._lock:
                self._checked.discard(resource)
            log.warning("could not read governor limits", resource=resource, error=str(exc))
            return
        if limited:
            return
        message = (
            f"governor resource {resource!r} has no limit configured: jobs of {task} run "
            f"unlimited (set one: sandbox-platform governor set-limit {resource} LIMIT PER_SECONDS)"
        )
        log.warning(message, resource=resource, task=task)
        self.alerts.alert(
            Severity.WARNING, KIND, message, key=resource, resource=resource, task=task
        )
