"""The guards' typed per-call state: one value per class, read back typed; a copy is its own."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox_platform.guards.state import GuardState, IdempotencyClaim


@dataclass(frozen=True)
class _Window:
    opened: float


@dataclass(frozen=True)
class _Other:
    opened: float


def test_a_value_is_kept_and_read_by_its_class() -> None:
    state = GuardState()
    assert state.get(_Window) is None and _Window not in state
    state.put(_Window(1.0))
    state.put(_Other(2.0))  # same fields, another class: no clash
    assert state.get(_Window) == _Window(1.0) and state.get(_Other) == _Other(2.0)
    state.put(_Window(3.0))
    assert state.get(_Window) == _Window(3.0)
    assert state.pop(_Window) == _Window(3.0) and state.get(_Window) is None


def test_a_copy_does_not_see_later_values() -> None:
    state = GuardState()
    state.put(IdempotencyClaim("k"))
    copied = state.copy()
    copied.put(IdempotencyClaim("k", 7))
    assert state.get(IdempotencyClaim) == IdempotencyClaim("k", None)
    assert copied.get(IdempotencyClaim) == IdempotencyClaim("k", 7)
