"""Earlier releases of the platform, run from ``git archive`` of their commit (the upgrade
tests): the tree, and ``python`` run in it or in this checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def archived_tree(commit: str, tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """The files of ``commit`` in a fresh directory (by id: a plain clone carries no tags)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], capture_output=True)
    assert archive.returncode == 0, f"needs {commit} in the history: {archive.stderr!r}"
    target = tmp_path_factory.mktemp(name)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def run_python(env: dict[str, str], *args: str) -> str:
    """``python *args`` in the tree its PYTHONPATH names (this checkout by default); its
    output. Fails the test on a non-zero exit."""
    cwd = env.get("PYTHONPATH", str(ROOT))
    done = subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=120, cwd=cwd
    )
    assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
    return done.stdout + done.stderr
