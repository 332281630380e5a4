"""A guarded task keeps its function's signature for type checkers.

mypy (strict) runs in a subprocess on a small user module: a ``.delay`` (or a direct call,
or an ``await .delay_async``) with wrong argument types or count is an error, a right one is
not, and ``.delay`` (and the awaited ``.delay_async``) returns an ``AsyncResult`` of the
function's return type. If ``guarded_task`` lost the signature (every
call typed ``(*args: Any, **kwargs: Any)``), the wrong calls would pass and this test fails.

mypy finds the package the way a user's mypy does: from the environment's path, run from a
temporary directory with no PYTHONPATH or MYPYPATH. For the editable install (the dev venv,
hatchling's ``.pth`` path entry) the last two tests check what issue 22 asked: a wrongly typed
``.delay`` is an ``arg-type`` error and never an ``import-not-found`` (setuptools' editable
finder, an import hook, was invisible to mypy), and a right module passes ``--strict``. The
wheel install's half is tests/release/test_wheel_typing.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

import sandbox_platform

pytestmark = pytest.mark.slow

#: the checkout the package is imported from (an editable install's source)
CHECKOUT = Path(sandbox_platform.__file__).resolve().parent.parent

HEADER = """
from typing import Any

from sandbox_platform import create_app
from sandbox_platform.tasks import guarded_task

app = create_app()


@guarded_task(app, idempotency_key="{order_id}")
def charge(order_id: str, cents: int) -> dict[str, int]:
    return {"cents": cents}


@guarded_task(app, bind=True)
def bound(self: Any, n: int) -> str:
    return str(n)
"""

RIGHT = """
reveal_type(charge.delay("order-1", 100))
charge.delay(order_id="order-1", cents=100)
total: int = charge("order-1", 100)["cents"] + 1
bound.delay(3)
reveal_type(charge.apply_async(("order-1", 100), countdown=5))


async def enqueue_from_a_coroutine() -> None:
    from collections.abc import Awaitable

    from celery.result import AsyncResult

    pending: Awaitable[AsyncResult[dict[str, int]]] = charge.delay_async("order-1", 100)
    reveal_type(await pending)
    await charge.delay_async(order_id="order-1", cents=100)
    await bound.delay_async(3)
"""

WRONG = """
charge.delay(123, "x")
charge.delay("order-1")
charge(1, 2)
bound.delay("three")


async def enqueue_from_a_coroutine() -> None:
    await charge.delay_async(123, "x")
    await charge.delay_async("order-1")
"""


def _mypy(tmp_path: Path) -> tuple[int, str]:
    for name, body in (("right_calls.py", RIGHT), ("wrong_calls.py", WRONG)):
        (tmp_path / name).write_text(textwrap.dedent(HEADER) + textwrap.dedent(body))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--follow-imports=silent",  # only the user's modules are judged here
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            "right_calls.py",
            "wrong_calls.py",
        ],
        cwd=tmp_path,
        env=_user_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    return proc.returncode, proc.stdout + proc.stderr


def _user_env() -> dict[str, str]:
    """The environment of a user's mypy: nothing points it at the checkout."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}


def _errors(output: str, filename: str) -> dict[int, str]:
    """The errors mypy reported in ``filename``, by line (a line's messages joined)."""
    found: dict[int, str] = {}
    for match in re.finditer(rf"^{filename}:(\d+): error: (.*)$", output, re.MULTILINE):
        line = int(match.group(1))
        found[line] = f"{found.get(line, '')}{match.group(2)}\n"
    return found


def test_delay_and_calls_are_checked_against_the_signature(tmp_path: Path) -> None:
    code, output = _mypy(tmp_path)
    assert code == 1, output  # errors found (2 would be a crash or a usage error)
    header_lines = len(textwrap.dedent(HEADER).splitlines())

    # the right calls: no error, and the result types are the function's
    assert _errors(output, "right_calls.py") == {}, output
    revealed = re.findall(r"^right_calls\.py:\d+: note: Revealed type is \"(.*)\"$", output, re.M)
    assert revealed == [
        "celery.result.AsyncResult[dict[str, int]]",
        "celery.result.AsyncResult[dict[str, int]]",
        "celery.result.AsyncResult[dict[str, int]]",
    ], output

    # the wrong calls: each line is an error of its own
    wrong = _errors(output, "wrong_calls.py")
    first = header_lines + 2  # WRONG starts with an empty line
    first_async = first + 7  # after two empty lines and the ``async def`` line
    assert sorted(wrong) == [first, first + 1, first + 2, first + 3, first_async, first_async + 1]
    assert 'incompatible type "int"; expected "str"' in wrong[first_async], output
    assert '"delay_async" of "GuardedTask"' in wrong[first_async], output
    assert "[call-arg]" in wrong[first_async + 1], output
    assert 'incompatible type "int"; expected "str"' in wrong[first], output
    assert "[call-arg]" in wrong[first + 1], output
    assert "[arg-type]" in wrong[first + 2], output
    assert 'incompatible type "str"; expected "int"' in wrong[first + 3], output


# -- the editable install (issue 22, item 5) ----------------------------------------------------

EDITABLE_HEADER = """\
from sandbox_platform import create_app
from sandbox_platform.tasks import guarded_task

app = create_app()


@guarded_task(app, idempotency_key="{order_id}")
def charge(order_id: str, cents: int) -> dict[str, int]:
    return {"cents": cents}


"""


def _editable_checkout() -> Path | None:
    """The checkout of an editable install of sandbox-platform (PEP 610), else None."""
    direct_url = metadata.distribution("sandbox-platform").read_text("direct_url.json")
    info = json.loads(direct_url or "{}")
    if not info.get("dir_info", {}).get("editable"):
        return None
    return Path(info["url"].removeprefix("file://")).resolve()


@pytest.fixture(scope="module")
def editable_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache for the editable runs: the package is analysed once."""
    checkout = _editable_checkout()
    if checkout is None:
        pytest.skip("not an editable install (the wheel's half: tests/release)")
    assert checkout == CHECKOUT, f"the editable install is of {checkout}, not {CHECKOUT}"
    return tmp_path_factory.mktemp("mypy-editable-cache")


def _user_mypy(tmp_path: Path, cache: Path, name: str, body: str) -> tuple[int, str]:
    """``mypy --strict <name>`` as a user runs it, from a directory outside the checkout."""
    assert not tmp_path.resolve().is_relative_to(CHECKOUT)
    (tmp_path / name).write_text(EDITABLE_HEADER + body)
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "mypy", "--strict", "--no-error-summary"),
            *("--cache-dir", str(cache), name),
        ],
        cwd=tmp_path,
        env=_user_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_editable_install_a_wrong_delay_is_an_arg_type_error(
    tmp_path: Path, editable_cache: Path
) -> None:
    code, output = _user_mypy(
        tmp_path, editable_cache, "wrong_calls.py", 'charge.delay("o", "1")\n'
    )
    assert code == 1, output  # errors found (2 would be a crash or a usage error)
    assert "import-not-found" not in output and "import-untyped" not in output, output
    errors = re.findall(r"^wrong_calls\.py:(\d+): error: (.*)$", output, re.MULTILINE)
    delay_line = len(EDITABLE_HEADER.splitlines()) + 1
    assert [int(line) for line, _ in errors] == [delay_line], output
    assert 'incompatible type "str"; expected "int"  [arg-type]' in errors[0][1], output


def test_editable_install_a_right_module_passes_strict(
    tmp_path: Path, editable_cache: Path
) -> None:
    code, output = _user_mypy(tmp_path, editable_cache, "right_calls.py", 'charge.delay("o", 1)\n')
    assert (code, output.strip()) == (0, ""), output
