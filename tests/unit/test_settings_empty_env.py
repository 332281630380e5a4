"""An empty SANDBOX_PLATFORM_* variable is an unset one: compose passes
``${SANDBOX_PLATFORM_LIVE_DATABASE_URL:-}`` and the Kubernetes Secret template an empty
``SANDBOX_PLATFORM_LIVE_DATABASE_URL`` in sandbox mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sandbox_platform.core.errors import SettingsError
from sandbox_platform.core.settings import load_settings
from tests.helpers import platform_env


@pytest.mark.parametrize("name", ["LIVE_DATABASE_URL", "RESULT_BACKEND", "ALERT_WEBHOOK_URL"])
def test_empty_is_unset(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(f"SANDBOX_PLATFORM_{name}", "")
    assert getattr(load_settings(data_dir=tmp_path), name.lower()) is None


def test_a_bad_non_empty_value_is_still_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SANDBOX_PLATFORM_LIVE_DATABASE_URL", "nonsense")
    with pytest.raises(SettingsError, match="SANDBOX_PLATFORM_LIVE_DATABASE_URL"):
        load_settings(data_dir=tmp_path)


def test_the_command_line_starts_with_an_empty_live_url(tmp_path: Path) -> None:
    env = platform_env(data_dir=tmp_path, live_database_url="")
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox_platform", "settings", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert '"live_database_url": null' in proc.stdout
