"""Find where a package uses the private API of Celery and kombu.

A *private name* is one that starts with a single underscore and that Celery's or kombu's own
source defines (a function, a method, a class, or an attribute they assign). The package uses
one when it

* reads or writes it on an object other than ``self``/``cls`` (``chan._q_for_pri``), or by
  name (``getattr(worker, "_conninfo")``);
* overrides it in a class whose bases come from Celery or kombu (``def _put`` in a subclass
  of kombu's Channel), or uses one such a class inherits (``self._queue_cycle``).

Names our own code defines and uses on its own objects are not counted.
"""

from __future__ import annotations

import ast
import importlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["THIRD_PARTY", "private_uses"]

THIRD_PARTY = ("celery", "kombu")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _defined(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            found.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            found.add(node.id)
    return {name for name in found if _private(name)}


def _sources(package: str) -> Iterator[Path]:
    module = importlib.import_module(package)  # (kombu's lazy module has no __spec__)
    assert module.__file__ is not None, package
    yield from Path(module.__file__).parent.rglob("*.py")


def _foreign_names() -> set[str]:
    names: set[str] = set()
    for package in THIRD_PARTY:
        for path in _sources(package):
            names |= _defined(ast.parse(path.read_text(encoding="utf-8")))
    return names


def _imported(tree: ast.AST) -> set[str]:
    """The names a module binds from Celery or kombu imports."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in THIRD_PARTY:
            names |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in THIRD_PARTY:
                    names.add((alias.asname or alias.name).split(".")[0])
    return names


def _on_self(node: ast.Attribute) -> bool:
    return isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")


def _by_name(node: ast.AST) -> str | None:
    """The private literal of ``getattr(x, "_name", ...)`` / ``setattr`` / ``hasattr``."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("getattr", "setattr", "hasattr")
        and len(node.args) >= 2
        and isinstance(node.args[1], ast.Constant)
        and isinstance(node.args[1].value, str)
        and _private(node.args[1].value)
    ):
        return node.args[1].value
    return None


def _in_subclasses(tree: ast.AST, imported: set[str], foreign: set[str]) -> Iterator[str]:
    for cls in (node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)):
        bases = {n.id for base in cls.bases for n in ast.walk(base) if isinstance(n, ast.Name)}
        if not bases & imported:
            continue
        methods = {
            node.name
            for node in cls.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        assigned = {
            node.attr
            for node in ast.walk(cls)
            if isinstance(node, ast.Attribute)
            and _on_self(node)
            and isinstance(node.ctx, ast.Store)
        }
        yield from (name for name in methods if _private(name) and name in foreign)
        for node in ast.walk(cls):
            if (
                isinstance(node, ast.Attribute)
                and _on_self(node)
                and _private(node.attr)
                and node.attr in foreign
                and node.attr not in assigned | methods
            ):
                yield node.attr


def private_uses(package_dir: Path, package: str) -> dict[str, set[str]]:
    """Module -> the private Celery/kombu names it uses (see the module's docstring)."""
    foreign = _foreign_names()
    paths = sorted(package_dir.rglob("*.py"))
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in paths}
    ours = set().union(*(_defined(tree) for tree in trees.values()))
    uses: dict[str, set[str]] = defaultdict(set)
    for path, tree in trees.items():
        module = ".".join((package, *path.relative_to(package_dir).with_suffix("").parts))
        imported = _imported(tree)
        uses[module] |= set(_in_subclasses(tree, imported, foreign))
        for node in ast.walk(tree):
            name = _by_name(node)
            if isinstance(node, ast.Attribute) and not _on_self(node) and _private(node.attr):
                name = node.attr
            if name is not None and name in foreign and (imported or name not in ours):
                uses[module].add(name)
    return {module: names for module, names in uses.items() if names}


def flatten(uses: dict[str, set[str]]) -> Iterable[tuple[str, str]]:
    return sorted((module, name) for module, names in uses.items() for name in names)
