"""Guards placed by name (before=/after=), the built-ins' order kept, contradictions and
unknown names refused, and 0.2's numeric ``order`` still read (with a warning)."""

from __future__ import annotations

import pytest

from sandbox_platform.guards.base import Guard
from sandbox_platform.guards.builtin import BUILTIN_GUARDS
from sandbox_platform.guards.ordering import sort_guards

BUILTIN_NAMES = [guard.name for guard in BUILTIN_GUARDS]


def _guard(name: str, *, before: tuple[str, ...] = (), after: tuple[str, ...] = (), order=None):  # type: ignore[no-untyped-def]
    cls = type(f"G_{name}", (Guard,), {"name": name, "before": before, "after": after})
    if order is not None:
        cls.order = order
    return cls()


def _names(guards: list[Guard]) -> list[str]:
    return [guard.name for guard in guards]


def test_the_built_ins_run_in_their_listed_order() -> None:
    assert _names(sort_guards(BUILTIN_GUARDS)) == BUILTIN_NAMES


def test_a_guard_with_no_names_runs_after_the_built_ins() -> None:
    extra = [_guard("audit"), _guard("metrics")]
    assert _names(sort_guards([*BUILTIN_GUARDS, *extra])) == [*BUILTIN_NAMES, "audit", "metrics"]


def test_after_and_before_place_a_guard_between_two_built_ins() -> None:
    window = _guard("maintenance", after=("mode",), before=("poison",))
    order = _names(sort_guards([*BUILTIN_GUARDS, window]))
    assert order[order.index("mode") + 1] == "maintenance"
    assert order.index("maintenance") + 1 == order.index("poison")
    assert [name for name in order if name != "maintenance"] == BUILTIN_NAMES


def test_after_alone_runs_as_soon_as_what_it_follows_has_run() -> None:
    order = _names(sort_guards([*BUILTIN_GUARDS, _guard("late", after=("idempotency",))]))
    assert order[order.index("idempotency") + 1] == "late"


def test_before_alone_runs_just_before_the_first_it_names() -> None:
    order = _names(sort_guards([*BUILTIN_GUARDS, _guard("early", before=("payload", "retry"))]))
    assert order[order.index("early") + 1] == "payload"


def test_guards_may_name_each_other() -> None:
    first = _guard("first", after=("retry",))
    second = _guard("second", after=("first",))
    assert _names(sort_guards([*BUILTIN_GUARDS, second, first]))[-2:] == ["first", "second"]


def test_an_unknown_name_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"'window' runs after 'nope', which is not among"):
        sort_guards([*BUILTIN_GUARDS, _guard("window", after=("nope",))])


def test_contradicting_names_are_refused() -> None:
    a = _guard("a", before=("b",))
    b = _guard("b", before=("a",))
    with pytest.raises(ValueError, match="contradict"):
        sort_guards([*BUILTIN_GUARDS, a, b])


def test_a_guard_cannot_reorder_the_built_ins() -> None:
    with pytest.raises(ValueError, match="contradict"):
        sort_guards([*BUILTIN_GUARDS, _guard("swap", after=("retry",), before=("mode",))])


def test_two_guards_of_one_name_are_refused() -> None:
    with pytest.raises(ValueError, match="two guards are named 'mode'"):
        sort_guards([*BUILTIN_GUARDS, _guard("mode")])


def test_a_numeric_order_of_0_2_still_places_the_guard_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match=r"order=15.*removed in 0\.4"):
        order = _names(sort_guards([*BUILTIN_GUARDS, _guard("old", order=15)]))
    assert order.index("mode") + 1 == order.index("old") == order.index("poison") - 1
