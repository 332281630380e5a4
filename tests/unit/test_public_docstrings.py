"""Every public name has a docstring: each name in ``__all__`` of the package root and of every
module the API reference documents (the ``::: module`` lines of docs/reference/*.md), so no
public name is missing from the reference or shown there without a word.

A class, function or module carries its own ``__doc__``: a class's is its own, not one it
inherits (from its base, or from ``object``), which is why this looks in the class's
``__dict__``. A constant or a type alias cannot carry one (its ``__doc__`` is its type's,
``str``'s or ``GenericAlias``'s), so its docstring is the string literal right under its
assignment (PEP 257's attribute docstring): what mkdocstrings shows, read here as it does,
with griffe.
"""

from __future__ import annotations

import importlib
import inspect
import re
from functools import cache
from pathlib import Path

import griffe
import pytest

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference"
DIRECTIVE = re.compile(r"^::: ([\w.]+)\s*$", re.MULTILINE)


def documented_modules() -> list[str]:
    return sorted(
        {name for page in REFERENCE.glob("*.md") for name in DIRECTIVE.findall(page.read_text())}
    )


MODULES = documented_modules()


def own_docstring(obj: object) -> str | None:
    """The object's own ``__doc__``; None for data, whose ``__doc__`` is its type's."""
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__")
    elif inspect.isroutine(obj) or inspect.ismodule(obj):
        doc = obj.__doc__
    else:
        return None
    return doc if isinstance(doc, str) and doc.strip() else None


@cache
def package() -> griffe.Module:
    loaded = griffe.load("sandbox_platform")
    assert isinstance(loaded, griffe.Module)
    return loaded


def attribute_docstring(module: str, name: str) -> str | None:
    """The docstring under ``name``'s assignment, following a re-export to its definition."""
    path = module.split(".")[1:]
    obj: griffe.Object | griffe.Alias = package()
    for part in [*path, name]:
        obj = obj.members[part]
    docstring = obj.docstring
    return docstring.value if docstring is not None and docstring.value.strip() else None


def undocumented(module: str) -> list[str]:
    loaded = importlib.import_module(module)
    return [
        name
        for name in loaded.__all__
        if own_docstring(getattr(loaded, name)) is None
        and attribute_docstring(module, name) is None
    ]


def test_the_reference_documents_the_package_root() -> None:
    assert "sandbox_platform" in MODULES
    assert len(MODULES) > 1, MODULES


@pytest.mark.parametrize("module", MODULES)
def test_every_public_name_has_a_docstring(module: str) -> None:
    assert undocumented(module) == []


class _Documented:
    """A docstring."""


class _Inherits(_Documented):
    pass


def _bare() -> None:
    pass


def test_an_inherited_or_builtin_docstring_does_not_count() -> None:
    assert own_docstring(_Documented) == "A docstring."
    assert own_docstring(_Inherits) is None  # _Inherits.__doc__ is None, not its base's
    assert own_docstring(ValueError("x")) is None  # an instance: its class's docstring
    assert own_docstring("0.2.0") is None  # str's docstring is not the constant's
    assert own_docstring(_bare) is None
    assert own_docstring(own_docstring) is not None


def test_a_constant_is_documented_by_the_string_under_it() -> None:
    assert attribute_docstring("sandbox_platform.limits", "LimitSpec")
    assert attribute_docstring("sandbox_platform.alerts", "THROTTLE_LUA")
    # a function's docstring is found through the re-export too
    assert attribute_docstring("sandbox_platform", "new_correlation_id")
