"""Releases of the platform the tests run: earlier ones from ``git archive`` of their commit
(the upgrade tests), and this one either from this checkout or, when ``SP_WHEEL_PYTHON``
names the python of a virtual environment the built wheel is installed in (``.ci/wheel-job``),
from that installation, with the checkout off the path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox_platform.procs.worker import WorkerSubprocess

ROOT = Path(__file__).resolve().parents[1]
#: the python of a virtual environment holding the built wheel, or None (this checkout)
WHEEL_PYTHON = os.environ.get("SP_WHEEL_PYTHON") or None
needs_wheel = pytest.mark.skipif(
    WHEEL_PYTHON is None,
    reason="checks an installed wheel: .ci/wheel-job builds one and sets SP_WHEEL_PYTHON",
)
#: the test modules a worker of this release loads as ``tests.worker_app`` (core deps only)
WORKER_APP_FILES = ("__init__.py", "worker_app.py", "task_defs.py", "async_tasks.py")


def archived_tree(commit: str, tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """The files of ``commit`` in a fresh directory (by id: a plain clone carries no tags)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], capture_output=True)
    assert archive.returncode == 0, f"needs {commit} in the history: {archive.stderr!r}"
    target = tmp_path_factory.mktemp(name)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def current_python() -> str:
    """The python that runs this release: the wheel's environment's, else this one."""
    return WHEEL_PYTHON or sys.executable


def current_install() -> Path:
    """Where this release's ``sandbox_platform`` is imported from: the wheel's virtual
    environment, else the checkout."""
    return Path(WHEEL_PYTHON).parent.parent if WHEEL_PYTHON else ROOT


def current_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where this release's processes run and import ``tests.worker_app`` from: the checkout,
    or (for the wheel) a directory holding only those test modules, so that
    ``sandbox_platform`` comes from the wheel's installation."""
    if WHEEL_PYTHON is None:
        return ROOT
    target = tmp_path_factory.mktemp("worker-app") / "tests"
    target.mkdir()
    for name in WORKER_APP_FILES:
        shutil.copy(ROOT / "tests" / name, target / name)
    return target.parent


def run_python(env: dict[str, str], *args: str, python: str = sys.executable) -> str:
    """``python *args`` in the tree its PYTHONPATH names (this checkout by default); its
    output. Fails the test on a non-zero exit."""
    cwd = env.get("PYTHONPATH", str(ROOT))
    done = subprocess.run(
        [python, *args], env=env, capture_output=True, text=True, timeout=120, cwd=cwd
    )
    assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
    return done.stdout + done.stderr


class CurrentWorker(WorkerSubprocess):
    """A ``celery worker`` of this release: run by :func:`current_python`."""

    def command(self) -> list[str]:
        return [current_python(), *super().command()[1:]]
