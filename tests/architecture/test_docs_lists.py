"""docs/architecture.md's lists are the code's: the guard hooks, and the built-in guards with
their order and module (a guard added, renamed, moved or re-ordered fails this until the docs
say so too)."""

from __future__ import annotations

import inspect
from pathlib import Path

import sandbox_platform
from sandbox_platform.guards.base import Guard
from sandbox_platform.guards.builtin import BUILTIN_GUARDS
from sandbox_platform.guards.ordering import sort_guards
from sandbox_platform.guards.shortcuts import SHORTCUT_HOOKS, EnqueueShortcuts

DOCS = Path(sandbox_platform.__file__).resolve().parent.parent / "docs" / "architecture.md"


def _table_after(text: str, heading: str) -> list[list[str]]:
    """The rows (cells, backticks stripped) of the first Markdown table after ``heading``."""
    after = text.split(heading, 1)[1]
    rows = []
    for line in after.splitlines():
        if line.startswith("|"):
            rows.append([cell.strip().strip("`") for cell in line.strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # without the header and its rule


def test_the_hooks_table_lists_every_hook_of_guard() -> None:
    documented = [row[0] for row in _table_after(DOCS.read_text(), "The hooks (")]
    hooks = [
        name
        for name, member in inspect.getmembers(Guard, inspect.isfunction)
        if not name.startswith("_")
    ]
    assert sorted(documented) == sorted(hooks)


def test_the_shortcut_table_lists_every_hook_of_the_protocol() -> None:
    documented = [row[0] for row in _table_after(DOCS.read_text(), "Enqueue shortcuts are")]
    hooks = [
        name
        for name, member in inspect.getmembers(EnqueueShortcuts, inspect.isfunction)
        if not name.startswith("_")
    ]
    assert sorted(documented) == sorted(hooks) == sorted(SHORTCUT_HOOKS)


def test_the_built_in_table_is_builtin_guards_in_order() -> None:
    documented = [
        (int(position), name, module)
        for position, name, module in _table_after(DOCS.read_text(), "The built-in guards, in")
    ]
    actual = [
        (
            position,
            guard.name,
            "/".join(type(guard).__module__.split(".")[1:]) + ".py",
        )
        for position, guard in enumerate(sort_guards(BUILTIN_GUARDS), start=1)
    ]
    assert documented == actual
    assert [guard.name for guard in sort_guards(BUILTIN_GUARDS)] == [
        guard.name for guard in BUILTIN_GUARDS
    ]


def test_the_strategy_table_is_the_enqueue_strategies() -> None:
    from sandbox_platform.app.enqueue import Strategy

    text = DOCS.read_text()
    documented = [row[0] for row in _table_after(text, "one strategy per job, chosen by")]
    assert sorted(documented) == sorted(strategy.value for strategy in Strategy)
    named = {
        name.strip().strip("`")
        for row in _table_after(text, "keeps the strategies here equal to the code")
        for name in row[2].split(",")
    }
    assert named <= {strategy.value for strategy in Strategy}


def test_every_built_in_guard_has_its_unit_test_with_the_harness() -> None:
    tests = DOCS.parent.parent / "tests" / "unit" / "guards"
    missing = []
    for guard in BUILTIN_GUARDS:
        path = tests / f"test_{guard.name}_guard.py"
        if not path.exists() or "make_harness" not in path.read_text(encoding="utf-8"):
            missing.append(guard.name)
    assert missing == [], "a built-in guard without its unit test (sandbox_platform.testing)"
