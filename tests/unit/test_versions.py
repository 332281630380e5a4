"""The supported Celery and kombu range: pyproject.toml and the code say the same, and what is
installed outside it is named."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import kombu
import pytest

from sandbox_platform.broker import versions

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _bounds(requirement: str) -> tuple[tuple[int, int], tuple[int, int]]:
    low = re.search(r">=(\d+)\.(\d+)", requirement)
    high = re.search(r"<(\d+)\.(\d+)", requirement)
    assert low and high, f"{requirement!r} is not bounded from below and above"
    return (int(low[1]), int(low[2])), (int(high[1]), int(high[2]))


def test_pyproject_bounds_celery_and_kombu_as_the_code_does() -> None:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    for name, supported in versions.SUPPORTED.items():
        (requirement,) = [d for d in dependencies if re.match(rf"{name}(\[|>|<|=|$)", d)]
        assert _bounds(requirement) == supported, requirement


def test_the_installed_versions_are_supported() -> None:
    assert versions.outside_range() is None
    assert versions.UNSUPPORTED is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("5.7.0", (5, 7)), ("5.7.0rc1", (5, 7)), ("6.0", (6, 0)), ("5", (5, 0)), ("x", (0, 0))],
)
def test_version_tuple(text: str, expected: tuple[int, int]) -> None:
    assert versions.version_tuple(text) == expected


@pytest.mark.parametrize("version", ["5.6.2", "5.8.0", "6.0.0"])
def test_a_kombu_outside_the_range_is_named(monkeypatch, version: str) -> None:
    monkeypatch.setattr(kombu, "__version__", version)
    assert versions.outside_range() == (
        f"kombu {version} (supported: >=5.7,<5.8): outside the versions sandbox-platform runs on"
    )
