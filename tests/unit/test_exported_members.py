"""The package root exports exactly its public API, and every name in __all__ exists."""

from __future__ import annotations

import sandbox_platform


def test_all_names_exist_and_are_sorted() -> None:
    for name in sandbox_platform.__all__:
        assert hasattr(sandbox_platform, name), name
    assert sorted(sandbox_platform.__all__) == list(sandbox_platform.__all__)


def test_public_members_are_exported() -> None:
    public = {
        name
        for name, value in vars(sandbox_platform).items()
        if not name.startswith("_") and not getattr(value, "__file__", None)  # skip submodules
    }
    assert public <= set(sandbox_platform.__all__), public - set(sandbox_platform.__all__)
