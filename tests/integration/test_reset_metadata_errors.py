"""``sandbox reset --metadata``: any bad ``module:attribute`` is one line on stderr, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import platform_env


@pytest.mark.parametrize(
    ("path", "said"),
    [
        ("mod:nope", "cannot import 'mod' (ModuleNotFoundError"),
        ("nope", "'nope' is not module:attribute"),
        ("os:nope", "'os' has no attribute 'nope'"),
        ("os:path", "module is not a SQLAlchemy MetaData"),
        ("json:", "is not module:attribute"),
    ],
)
def test_bad_metadata_is_one_line_and_exit_2(
    path: str, said: str, redis_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    env = platform_env(redis_url=redis_url, database_url=sqlite_url, data_dir=tmp_path / "d")
    done = subprocess.run(
        [sys.executable, "-m", "sandbox_platform", "sandbox", "reset", "--metadata", path, "--yes"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("sandbox-platform: --metadata: ")
    assert said in lines[0]
    assert "Traceback" not in done.stderr
