"""No module of the package over 450 lines (Alembic's generated migrations aside): a module
that grows past it holds more than one concept and is split by what its parts do."""

from __future__ import annotations

from pathlib import Path

import sandbox_platform

PACKAGE = Path(sandbox_platform.__file__).resolve().parent
LIMIT = 450


def long_modules(root: Path, limit: int = LIMIT) -> dict[str, int]:
    found: dict[str, int] = {}
    for path in sorted(root.rglob("*.py")):
        if "migrations" in path.relative_to(root).parts:
            continue
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > limit:
            found[str(path.relative_to(root))] = lines
    return found


def test_no_module_is_over_the_limit() -> None:
    assert long_modules(PACKAGE) == {}


def test_the_check_sees_a_long_module(tmp_path: Path) -> None:
    (tmp_path / "long.py").write_text("x = 1\n" * (LIMIT + 1))
    (tmp_path / "short.py").write_text("x = 1\n" * LIMIT)
    assert long_modules(tmp_path) == {"long.py": LIMIT + 1}
