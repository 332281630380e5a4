"""Typed per-call state of the guards: one value per state class, on the job or the call.

A guard keeps what it works out for one job (or one enqueue call) in ``job.state`` /
``call.state``, never on itself (guards are shared by a worker's threads). Each guard
declares its own small frozen dataclass and stores an instance of it: the class is the key,
so a read is typed and two guards cannot clash::

    @dataclass(frozen=True)
    class _Window:
        opened: float

    job.state.put(_Window(time.time()))
    window = job.state.get(_Window)        # _Window | None

Three state classes are shared on purpose: :class:`IdempotencyClaim`, the job's idempotency
key and fencing token, which the pipeline shows to the job's body (the job scope) and names in
its dead letter; :class:`CallArguments`, the arguments the body is called with when they are
not the message's (the secrets guard opens sealed ones); :class:`FingerprintArguments`, the
arguments the idempotency fingerprint is taken over when they are not the message's (a secret
one as its HMAC).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["CallArguments", "FingerprintArguments", "GuardState", "IdempotencyClaim"]

_T = TypeVar("_T")


class GuardState:
    """The guards' state for one job or one enqueue call (see the module)."""

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: dict[type[Any], Any] = {}

    def get(self, kind: type[_T]) -> _T | None:
        """The value of class ``kind``, or None."""
        value: _T | None = self._values.get(kind)
        return value

    def put(self, value: object) -> None:
        """Keep ``value`` (replacing the one of its class)."""
        self._values[type(value)] = value

    def pop(self, kind: type[_T]) -> _T | None:
        """Take the value of class ``kind`` away; it, or None."""
        value: _T | None = self._values.pop(kind, None)
        return value

    def copy(self) -> GuardState:
        """A shallow copy (the values are frozen)."""
        copied = GuardState()
        copied._values = dict(self._values)
        return copied

    def __contains__(self, kind: object) -> bool:
        return kind in self._values

    def __repr__(self) -> str:
        return f"GuardState({', '.join(kind.__name__ for kind in self._values)})"


@dataclass(frozen=True)
class IdempotencyClaim:
    """The job's idempotency key and, once its claim is acquired, the fencing token."""

    key: str
    fencing_token: int | None = None


@dataclass(frozen=True)
class CallArguments:
    """What the body is called with, when a guard changed the message's arguments."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class FingerprintArguments:
    """What the idempotency fingerprint is taken over, when not the message's arguments:
    ``make()`` works them out (only a job that has an idempotency key asks)."""

    make: Callable[[], tuple[tuple[Any, ...], dict[str, Any]]]
