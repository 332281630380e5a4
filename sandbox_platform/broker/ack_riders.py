"""Work that rides with a delivery's acknowledgement: one round trip where there were two.

An idempotent job that succeeds stores its result in its idempotency record (the record turns
``done``) and is then acknowledged. When the platform's transport delivered the job in this
very process (the solo pool: the job runs inside the delivery) and the idempotency records live
on the broker's Redis node, both happen in one script: the idempotency guard *attaches* its
completion to the delivery, and the transport sends it with the acknowledgement
(``broker/lua/fetch.lua`` or ``ack.lua``: result stored, then acknowledged, atomically).

Nothing is weaker than two calls: the result is stored before (and with) the acknowledgement,
so a job redelivered after a crash finds it ``done`` exactly when it would have before; a crash
before that call leaves the record ``running`` as a crash before ``idem_complete`` did. The
record turns ``done`` a moment after Celery stores the task's result (with the
acknowledgement, not inside the task call).

Each channel of the transport keeps its :class:`Deliveries`: it *opens* a delivery tag when
it hands a message over and *takes* it when it acknowledges or rejects it. A completion is
attached only to a tag that this process opened and has not acknowledged yet
(:meth:`Deliveries.attach` answers False otherwise: a prefork child, where the parent
acknowledges, or a task acknowledged early); the guard then stores the result itself. Guards
reach the channels of their own app through the app's
:class:`~sandbox_platform.broker.hooks.BrokerHooks` (in their services), never through a
module registry.

The job's run record rides the same way (:meth:`Deliveries.attach_record`): the script that
acknowledges the job pushes it onto the run-record outbox (``db/outbox.py``), so a job
acknowledged has its record, even if the worker is killed a moment later.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

__all__ = ["Completion", "Deliveries", "Rider", "Settled", "Settlement"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Settled:
    """What became of a completion: ``stored``; else not stored, because its token was stale
    (``stale``) or its record could not take it (``error``, e.g. the key holds a string)."""

    record_key: str
    stored: bool
    stale: bool = False
    error: str = ""

    @classmethod
    def from_script(cls, record_key: str, status: object) -> Settled:
        """From a status of ``riders_settle`` (1, 0 or ``"broken: ..."``)."""
        if isinstance(status, bytes):
            status = status.decode(errors="replace")
        if isinstance(status, str) and not status.lstrip("-").isdigit():
            return cls(record_key, stored=False, error=status.removeprefix("broken: "))
        stored = int(str(status)) == 1
        return cls(record_key, stored=stored, stale=not stored)


class Settlement:
    """The settling of one completion, once: callbacks added before it run when it settles,
    callbacks added after it run at once (on the adding thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settled: Settled | None = None
        self._callbacks: list[Callable[[Settled], None]] = []

    def then(self, callback: Callable[[Settled], None]) -> None:
        with self._lock:
            settled = self._settled
            if settled is None:
                self._callbacks.append(callback)
                return
        _call(callback, settled)

    def peek(self) -> Settled | None:
        """How it settled, or None while it has not."""
        with self._lock:
            return self._settled

    def settle(self, settled: Settled) -> None:
        with self._lock:
            if self._settled is not None:
                return
            self._settled = settled
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            _call(callback, settled)


def _call(callback: Callable[[Settled], None], settled: Settled) -> None:
    try:
        callback(settled)
    except Exception:
        log.exception("completion callback failed", record=settled.record_key)


@dataclass(frozen=True)
class Completion:
    """An idempotency result to store with an acknowledgement (``claim_complete`` in Lua);
    what became of it is told through ``settlement``."""

    record_key: str
    token: int
    result_json: str
    settlement: Settlement = field(default_factory=Settlement, compare=False, repr=False)

    def args(self) -> list[str]:
        """The script's ARGV triple."""
        return [self.record_key, str(self.token), self.result_json]

    def settle(self, status: object) -> Settled:
        """Settle with a status of the script; the outcome."""
        settled = Settled.from_script(self.record_key, status)
        self.settlement.settle(settled)
        return settled


@dataclass(frozen=True)
class Rider:
    """What rides with one delivery's acknowledgement: an idempotency completion, the job's
    run record (encoded, pushed onto the list ``outbox``: db/outbox.py), or both."""

    completion: Completion | None = None
    outbox: str = ""
    record: str = ""

    def args(self) -> list[str]:
        """The script's ARGV five: record key, token, result ("" x 3 without a completion),
        outbox key, run record ("" x 2 without one)."""
        done = self.completion.args() if self.completion is not None else ["", "", ""]
        return [*done, self.outbox, self.record]

    def settle(self, status: object) -> Settled | None:
        """Settle the completion (if any) with its status from the script."""
        return self.completion.settle(status) if self.completion is not None else None


#: an opened delivery that nothing rides with yet
_OPEN = Rider()


class Deliveries:
    """The deliveries one channel handed over in this process and has not acknowledged yet,
    with what rides with each (one per channel: :meth:`BrokerHooks.for_channel
    <sandbox_platform.broker.hooks.BrokerHooks.for_channel>`). Thread-safe; a forked child
    cannot attach to a tag its parent opened (the parent acknowledges it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: delivery tag -> (pid that opened it, what rides with it)
        self._open: dict[str, tuple[int, Rider]] = {}

    def open(self, tag: str) -> None:
        """The channel hands over delivery ``tag`` and will acknowledge it in this process."""
        with self._lock:
            self._open[tag] = (os.getpid(), _OPEN)

    def attach(self, tag: str | None, completion: Completion) -> bool:
        """Let ``completion`` ride with the acknowledgement of ``tag``. False (nothing
        attached) when this process did not open ``tag`` or has acknowledged it already."""
        return self._ride(tag, lambda rider: dataclasses.replace(rider, completion=completion))

    def attach_record(self, tag: str | None, outbox: str, record: str) -> bool:
        """Let the run record ``record`` ride with the acknowledgement of ``tag``, pushed onto
        the list ``outbox``. False (nothing attached) as for :meth:`attach`."""
        return self._ride(
            tag, lambda rider: dataclasses.replace(rider, outbox=outbox, record=record)
        )

    def _ride(self, tag: str | None, change: Callable[[Rider], Rider]) -> bool:
        if not tag:
            return False
        with self._lock:
            entry = self._open.get(tag)
            if entry is None or entry[0] != os.getpid():
                return False
            self._open[tag] = (entry[0], change(entry[1]))
        return True

    def take(self, tag: str) -> Rider | None:
        """Close ``tag`` (being acknowledged or rejected); what rides with it, if anything."""
        with self._lock:
            entry = self._open.pop(tag, None)
        if entry is None or entry[0] != os.getpid() or entry[1] is _OPEN:
            return None
        return entry[1]

    def forget_all(self) -> list[Rider]:
        """Close every tag this process opened (the channel is closing and restores what it
        did not acknowledge); what rides with them, to send now."""
        pid = os.getpid()
        with self._lock:
            mine = [tag for tag, (owner, _r) in self._open.items() if owner == pid]
            riders = [self._open.pop(tag)[1] for tag in mine]
        return [rider for rider in riders if rider is not _OPEN]
