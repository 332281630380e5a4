"""One version, single-sourced from the package metadata (pyproject.toml states it)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

import sandbox_platform
from sandbox_platform.core import version
from tests.helpers import platform_env

ROOT = Path(__file__).resolve().parents[2]


def test_the_version_is_the_package_metadata_and_pyproject_s() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert sandbox_platform.__version__ == metadata.version("sandbox-platform") == declared


def test_cli_version_prints_it_and_exits_0(tmp_path: Path) -> None:
    """It reads no settings: even a bad one does not stop ``--version``."""
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox_platform", "--version"],
        env=platform_env(data_dir=tmp_path, mode="bogus"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{metadata.version('sandbox-platform')}\n"
    assert proc.stderr == ""


def test_without_metadata_the_version_says_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(version.metadata, "version", missing)
    assert version.installed_version() == "0+unknown"
