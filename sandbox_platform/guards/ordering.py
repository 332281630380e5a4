"""Where each guard stands in the pipeline: by name, relative to the others.

The built-in guards run in the order of ``BUILTIN_GUARDS``. A guard places itself with the
names of the guards it must run ``before`` or ``after`` (forward hooks; the reverse hooks,
``on_error`` and ``after_run``, run the other way)::

    class MaintenanceWindow(Guard):
        name = "maintenance"
        after = ("mode",)      # a message of the other mode is refused first
        before = ("poison",)   # deferred before a redelivery is counted

Guards that name none keep the given order among themselves (built-ins first, then the
application's, in the order it passed them: a guard with no names runs after the built-ins).
A guard that names guards it runs ``after`` runs as soon as they have; one that names only
guards it runs ``before`` runs just before the first of them. A
name no guard of the pipeline has, or constraints that contradict each other, are a
``ValueError`` when the app is built.

``order`` (a number among the built-ins' former 5-60) is still read, with a
``DeprecationWarning``, and removed in 0.4 (:data:`ORDER_REMOVED_IN`).
"""

from __future__ import annotations

import heapq
import itertools
import warnings
from collections.abc import Sequence
from types import MappingProxyType

from sandbox_platform.guards.base import Guard

__all__ = ["ORDER_REMOVED_IN", "sort_guards"]

#: the release that stops reading ``Guard.order``
ORDER_REMOVED_IN = "0.4"

#: the numbers 0.2 gave the built-ins (read only to place a guard that still sets ``order``)
_FORMER_ORDER = MappingProxyType(
    {
        "time_limit": 5,
        "mode": 10,
        "poison": 20,
        "arguments": 25,
        "payload": 30,
        "countdown": 35,
        "idempotency": 40,
        "governor": 50,
        "retry": 60,
    }
)


def sort_guards(guards: Sequence[Guard]) -> list[Guard]:
    """``guards`` in the order they run (see the module)."""
    names = _unique_names(guards)
    edges: dict[int, set[int]] = {index: set() for index in range(len(guards))}
    for index, guard in enumerate(guards):
        for other in guard.before:
            edges[index].add(_named(names, guard, other, "before"))
        for other in guard.after:
            edges[_named(names, guard, other, "after")].add(index)
    base = _base_order(guards, names)
    free = [index for index, guard in enumerate(guards) if _free(guard)]
    for earlier, later in itertools.pairwise(free):
        edges[earlier].add(later)  # the given order stands among the free ones
    return [guards[index] for index in _topological(edges, base, guards)]


def _free(guard: Guard) -> bool:
    """No constraint of its own: it keeps its place in the given order."""
    legacy = getattr(guard, "order", None) is not None and guard.name not in _FORMER_ORDER
    return not (guard.before or guard.after or legacy)


def _unique_names(guards: Sequence[Guard]) -> dict[str, int]:
    names: dict[str, int] = {}
    for index, guard in enumerate(guards):
        if guard.name in names:
            raise ValueError(f"two guards are named {guard.name!r}: each name is one guard")
        names[guard.name] = index
    return names


def _named(names: dict[str, int], guard: Guard, other: str, relation: str) -> int:
    if other not in names:
        raise ValueError(
            f"guard {guard.name!r} runs {relation} {other!r}, which is not among the "
            f"app's guards ({', '.join(sorted(names))})"
        )
    return names[other]


def _base_order(guards: Sequence[Guard], names: dict[str, int]) -> list[float]:
    """Each guard's priority among those ready to be placed (lower first; see the module)."""
    base: list[float] = []
    for index, guard in enumerate(guards):
        if guard.after:
            base.append(-1.0)  # as soon as what it follows has run
        elif guard.before:
            base.append(min(names[other] for other in guard.before if other in names) - 0.5)
        elif getattr(guard, "order", None) is not None and guard.name not in _FORMER_ORDER:
            base.append(_former_place(guards, guard, index))
        else:
            base.append(float(index))
    return base


def _former_place(guards: Sequence[Guard], guard: Guard, index: int) -> float:
    """Where a guard that still sets ``order`` stood in 0.2: just after the last built-in
    with a lower number."""
    number = guard.order
    warnings.warn(
        f"guard {guard.name!r} sets order={number}: name the guards it runs before= or "
        f"after= instead (order is removed in {ORDER_REMOVED_IN})",
        DeprecationWarning,
        stacklevel=5,
    )
    assert number is not None
    below = [i for i, g in enumerate(guards) if _FORMER_ORDER.get(g.name, 1e9) <= number]
    return max(below, default=-1) + 0.5 + index / (10 * len(guards))


def _topological(
    edges: dict[int, set[int]], base: list[float], guards: Sequence[Guard]
) -> list[int]:
    incoming = {index: 0 for index in edges}
    for targets in edges.values():
        for target in targets:
            incoming[target] += 1
    ready = [(base[index], index) for index, count in incoming.items() if count == 0]
    heapq.heapify(ready)
    placed: list[int] = []
    while ready:
        _, index = heapq.heappop(ready)
        placed.append(index)
        for target in edges[index]:
            incoming[target] -= 1
            if incoming[target] == 0:
                heapq.heappush(ready, (base[target], target))
    if len(placed) < len(edges):
        stuck = sorted(guards[index].name for index, count in incoming.items() if count > 0)
        raise ValueError(f"the guards' before/after names contradict each other: {stuck}")
    return placed
