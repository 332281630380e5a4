"""A guarded task keeps its function's signature for type checkers.

mypy (strict) runs in a subprocess on a small user module: a ``.delay`` (or a direct call,
or an ``await .delay_async``) with wrong argument types or count is an error, a right one is
not, and ``.delay`` (and the awaited ``.delay_async``) returns an ``AsyncResult`` of the
function's return type. If ``guarded_task`` lost the signature (every
call typed ``(*args: Any, **kwargs: Any)``), the wrong calls would pass and this test fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import sandbox_platform

pytestmark = pytest.mark.slow

#: where the package's source is (an editable install is invisible to mypy otherwise)
SOURCE_ROOT = Path(sandbox_platform.__file__).resolve().parent.parent

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
        env={**os.environ, "MYPYPATH": str(SOURCE_ROOT)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    return proc.returncode, proc.stdout + proc.stderr


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
