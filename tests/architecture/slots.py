"""Find process-wide slots in a package: module-level names bound to a mutable container,
and ``global`` statements.

A module-level list, dict, set, deque, ``threading.local`` or weak container is state that
every app and every job of the process shares; so is a name a function rebinds with
``global``. State that can differ per app or per job belongs in the job's scope or on the app
(docs/architecture.md, "Process-wide slots", lists the few that remain, each with its reason).
Immutable constants (tuples, frozensets, ``MappingProxyType``) are not slots.
"""

from __future__ import annotations

import ast
import collections
import importlib
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["MUTABLE", "Slot", "find_slots", "slots_in_source"]

#: the types whose module-level instances are slots (subclasses included)
MUTABLE: tuple[type[Any], ...] = (
    list,
    dict,
    set,
    bytearray,
    collections.deque,
    threading.local,
    weakref.WeakSet,
    weakref.WeakKeyDictionary,
    weakref.WeakValueDictionary,
)
#: names that are lists by convention, never state
_CONVENTIONAL = frozenset({"__all__", "__path__"})
_LITERALS = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)
_FACTORIES = frozenset(
    {
        "list",
        "dict",
        "set",
        "bytearray",
        "deque",
        "defaultdict",
        "OrderedDict",
        "Counter",
        "local",
        "WeakSet",
        "WeakKeyDictionary",
        "WeakValueDictionary",
    }
)


@dataclass(frozen=True, order=True)
class Slot:
    """``module:name`` and how it was found (``container`` or ``global``)."""

    module: str
    name: str
    kind: str

    @property
    def key(self) -> str:
        return f"{self.module}:{self.name}"


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Module-level statements, including those under a top-level if/try/with."""
    for node in body:
        yield node
        if isinstance(node, ast.If | ast.With):
            yield from _top_level(node.body)
            yield from _top_level(getattr(node, "orelse", []))
        elif isinstance(node, ast.Try):
            for part in (node.body, node.orelse, node.finalbody):
                yield from _top_level(part)
            for handler in node.handlers:
                yield from _top_level(handler.body)


def _assigned(node: ast.stmt) -> list[tuple[str, ast.expr | None]]:
    if isinstance(node, ast.Assign):
        return [(t.id, node.value) for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [(node.target.id, node.value)]
    return []


def _looks_mutable(value: ast.expr | None) -> bool:
    if isinstance(value, _LITERALS):
        return True
    if isinstance(value, ast.Call):
        func = value.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        return name in _FACTORIES
    return False


def slots_in_source(module: str, source: str, namespace: dict[str, Any] | None = None) -> set[Slot]:
    """The slots of one module's source. With ``namespace`` (the imported module's globals)
    a name is also a slot when its value is a :data:`MUTABLE` instance, however it was made."""
    tree = ast.parse(source)
    found: set[Slot] = set()
    for node in _top_level(tree.body):
        for name, value in _assigned(node):
            if name in _CONVENTIONAL:
                continue
            held = (namespace or {}).get(name, None)
            if _looks_mutable(value) or isinstance(held, MUTABLE):
                found.add(Slot(module, name, "container"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            found.update(Slot(module, name, "global") for name in node.names)
    return found


def _modules(package: Path, root: str) -> Iterator[tuple[str, Path]]:
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        if "migrations" in parts or parts[-1] == "__main__":
            continue  # Alembic scripts; the CLI's entry point runs on import
        if parts[0] == "examples":
            # the example app's modules build an app at import (as a user's app module does):
            # imported here, that app would stay registered for the rest of the test process
            # and code outside any job would find it (its SQLite database unmigrated)
            continue
        dotted = (
            ".".join((root, *parts[:-1])) if parts[-1] == "__init__" else ".".join((root, *parts))
        )
        yield dotted, path


def find_slots(package: Path, root: str) -> set[Slot]:
    """Every slot of the package at ``package`` (importable as ``root``)."""
    found: set[Slot] = set()
    for dotted, path in _modules(package, root):
        namespace = vars(importlib.import_module(dotted))
        found |= slots_in_source(dotted, path.read_text(), namespace)
    return found
