"""Every code example of the user guide (``docs/*.md``) is run or checked.

* ``python`` blocks run, each in a fresh interpreter with the test's Redis and database, and
  must exit 0 (their ``assert``s are the example's claims);
* ``bash`` blocks: every ``sandbox-platform`` command must exist with the options it is given
  (checked against the CLI itself, as the deployment files' commands are), and every
  ``SANDBOX_PLATFORM_*`` variable exported must be a setting; other commands (pip, docker,
  kubectl, redis-server) are the reader's, not ours;
* blocks without a language are output or diagrams, and blocks in ``yaml``/``dockerfile``
  are checked by the deployment tests.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy_files import check_platform_command
from tests.helpers import platform_env

DOCS = Path(__file__).resolve().parents[2] / "docs"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def examples(language: str) -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(DOCS.glob("*.md")):
        blocks = [m.group(2) for m in FENCE.finditer(path.read_text()) if m.group(1) == language]
        found += [(path.name, i, code) for i, code in enumerate(blocks, 1)]
    return found


PYTHON = examples("python")
BASH = examples("bash") + examples("sh") + examples("console")


@pytest.mark.parametrize(("doc", "index", "code"), PYTHON, ids=[f"{d}#{i}" for d, i, _ in PYTHON])
def test_python_example_runs(
    doc: str, index: int, code: str, platform_settings_kwargs: dict[str, object], tmp_path: Path
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=platform_env(**platform_settings_kwargs),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"{doc} example {index} failed:\n{proc.stderr[-3000:]}"


def _commands(code: str) -> list[list[str]]:
    """The shell lines of a block, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    lines = []
    for raw in joined.splitlines():
        line = raw.split(" #", 1)[0].strip().removesuffix("&").strip()
        if line and not line.startswith("#"):
            lines.append(shlex.split(line.removeprefix("$ ")))
    return lines


@pytest.mark.parametrize(("doc", "index", "code"), BASH, ids=[f"{d}#{i}" for d, i, _ in BASH])
def test_shell_example_names_real_commands_and_settings(doc: str, index: int, code: str) -> None:
    from sandbox_platform.core.settings import ENV_PREFIX, Settings

    settings = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    for argv in _commands(code):
        if argv[0] == "sandbox-platform":
            check_platform_command(argv)
        if argv[0] == "export":
            name = argv[1].split("=", 1)[0]
            assert not name.startswith(ENV_PREFIX) or name in settings, f"{doc}: {name}"


def test_the_checker_catches_a_wrong_command_and_option() -> None:
    with pytest.raises(AssertionError, match="no such command"):
        check_platform_command(["sandbox-platform", "wroker"])
    with pytest.raises(AssertionError, match="not an option"):
        check_platform_command(["sandbox-platform", "readiness", "--jsn"])
    check_platform_command(["sandbox-platform", "dead-letters", "replay", "1", "--app", "shop"])
