"""What guards report, and who listens: a small publish/subscribe bus, one per runtime.

Guards and the pipeline *emit* events; the operations layer *subscribes* (alerts, metrics),
so no guard knows what an alert is. Callbacks are held strongly under a uid (subscribing the
same uid again replaces it); a failing callback is logged loudly and never breaks the job
that emitted the event.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

__all__ = [
    "AdmissionUnavailable",
    "DryRunIntercepted",
    "Event",
    "Events",
    "GovernorAdmitted",
    "GovernorDenied",
    "JobDeadLettered",
    "JobFinished",
    "ResultNotStored",
]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Event:
    """Base of every event: the task it concerns and the work's correlation id."""

    task: str
    task_id: str | None = None
    correlation_id: str | None = None


@dataclass(frozen=True)
class GovernorDenied(Event):
    """The governor denied a job; it was re-queued to run in ``wait_seconds``.
    ``waited_seconds``: how long the governor had already kept it waiting (since its first
    deferral; 0 on the first)."""

    resource: str = ""
    wait_seconds: float = 0.0
    waited_seconds: float = 0.0


@dataclass(frozen=True)
class GovernorAdmitted(Event):
    """The governor let a job through; it took tokens from each of ``resources``."""

    resources: tuple[str, ...] = ()


@dataclass(frozen=True)
class DryRunIntercepted(Event):
    """An irreversible action was intercepted in sandbox mode (``record`` as stored)."""

    record: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobDeadLettered(Event):
    """A job was stored as a dead letter. ``failed`` marks a final failure of the job itself
    (retries exhausted, not retryable, a conflict), as opposed to a message refused unrun."""

    reason: str = ""
    detail: str = ""
    attempts: int = 1
    failed: bool = False
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AdmissionUnavailable(Event):
    """The Redis of the admission (governor, idempotency) could not be reached."""

    error: str = ""


@dataclass(frozen=True)
class JobFinished(Event):
    """One run of a guarded job ended in ``state`` (a run-record state) after ``seconds``."""

    state: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class ResultNotStored(Event):
    """A job ran but its idempotency result was not stored: ``record_key`` could not take it."""

    record_key: str = ""
    error: str = ""


E = TypeVar("E", bound=Event)


class Events:
    """Subscribers per event type; :meth:`emit` calls those of the event's type and bases."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[type[Event], dict[str, Callable[[Any], object]]] = {}

    def subscribe(self, kind: type[E], callback: Callable[[E], object], *, uid: str) -> None:
        """Call ``callback(event)`` for every event of type ``kind`` (or a subclass)."""
        with self._lock:
            self._subscribers.setdefault(kind, {})[uid] = callback

    def unsubscribe(self, uid: str) -> bool:
        """Remove the subscription ``uid`` from every type; True when one was removed."""
        removed = False
        with self._lock:
            for callbacks in self._subscribers.values():
                removed = callbacks.pop(uid, None) is not None or removed
        return removed

    def emit(self, event: Event) -> None:
        for kind in type(event).__mro__:
            callbacks = self._subscribers.get(kind)
            if not callbacks:
                continue
            for uid, callback in list(callbacks.items()):
                try:
                    callback(event)
                except Exception:
                    log.exception("event subscriber failed", subscriber=uid, event=kind.__name__)
