"""Typed tasks from a wheel install (issue 22): mypy, installed beside the wheel the way a user
installs it (``pip install mypy celery-types``), checks a user module against the installed
package: a wrongly typed ``.delay`` is an ``arg-type`` error, never an ``import-not-found``,
and a right one passes ``--strict``. The editable install's half is tests/unit/test_task_typing.py.

Runs only when ``SP_WHEEL_PYTHON`` names the wheel's environment's python (``.ci/wheel-job``
installs mypy and celery-types there after the core checks); from a temporary directory, with
no PYTHONPATH or MYPYPATH, so the checkout is nowhere on mypy's path.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.releases import WHEEL_PYTHON, needs_wheel

pytestmark = [needs_wheel, pytest.mark.slow]

HEADER = """\
from sandbox_platform import create_app
from sandbox_platform.tasks import guarded_task

app = create_app()


@guarded_task(app, idempotency_key="{order_id}")
def charge(order_id: str, cents: int) -> dict[str, int]:
    return {"cents": cents}


"""
RIGHT = 'charge.delay("order-1", 100)\n'
WRONG = 'charge.delay("order-1", "100")\n'


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache for the module's runs: the package is analysed once."""
    return tmp_path_factory.mktemp("mypy-cache")


def _mypy(tmp_path: Path, cache_dir: Path, name: str, body: str) -> tuple[int, str]:
    assert WHEEL_PYTHON is not None
    (tmp_path / name).write_text(HEADER + body)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    done = subprocess.run(
        [
            WHEEL_PYTHON,
            *("-m", "mypy", "--strict", "--no-error-summary"),
            *("--cache-dir", str(cache_dir), name),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if "No module named mypy" in done.stderr:
        pytest.fail(f"install mypy and celery-types into {WHEEL_PYTHON}'s environment")
    return done.returncode, done.stdout + done.stderr


def test_a_wrongly_typed_delay_is_an_arg_type_error(tmp_path: Path, cache_dir: Path) -> None:
    code, output = _mypy(tmp_path, cache_dir, "wrong_calls.py", WRONG)
    assert code == 1, output  # errors found (2 would be a crash or a usage error)
    assert "import-not-found" not in output and "import-untyped" not in output, output
    delay_line = len(HEADER.splitlines()) + 1
    errors = re.findall(r"^wrong_calls\.py:(\d+): error: (.*)$", output, re.MULTILINE)
    assert [int(line) for line, _ in errors] == [delay_line], output
    assert 'incompatible type "str"; expected "int"  [arg-type]' in errors[0][1], output


def test_a_rightly_typed_delay_passes_strict(tmp_path: Path, cache_dir: Path) -> None:
    code, output = _mypy(tmp_path, cache_dir, "right_calls.py", RIGHT)
    assert (code, output.strip()) == (0, ""), output
