"""What live mode must be told (issue 22, item 3 and item 1): a Redis URL shared by every
process and, where an app is loaded, the app module. Sandbox mode supplies both itself (an
embedded redis-server, the bundled example app); in live mode an unset or empty one is a
settings error, one line naming the variable and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sandbox_platform.core.errors import SettingsError
from sandbox_platform.core.live_requirements import EXAMPLE_APP, chosen_app
from sandbox_platform.core.settings import Mode, load_settings
from tests.helpers import platform_env

LIVE = {
    "mode": "live",
    "database_url": "postgresql://h/sandbox",
    "live_database_url": "postgresql://h/live",
}


def _one_line(proc: subprocess.CompletedProcess[str], name: str) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert name in lines[0]
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_live_without_a_redis_url_is_refused() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(**LIVE)
    assert info.value.setting == "SANDBOX_PLATFORM_REDIS_URL"
    assert "embedded" in info.value.problem


def test_live_with_an_empty_redis_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_PLATFORM_REDIS_URL", "")  # compose's ${VAR:-}
    with pytest.raises(SettingsError) as info:
        load_settings(**LIVE)
    assert info.value.setting == "SANDBOX_PLATFORM_REDIS_URL"


def test_live_with_a_redis_url_loads() -> None:
    settings = load_settings(**LIVE, redis_url="redis://h:6379/0")
    assert settings.mode is Mode.LIVE and not settings.embedded_redis


def test_the_live_database_is_still_named_first() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(mode="live")
    assert info.value.setting == "SANDBOX_PLATFORM_LIVE_DATABASE_URL"


def test_sandbox_without_a_redis_url_keeps_the_embedded_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SANDBOX_PLATFORM_REDIS_URL", "")
    settings = load_settings(data_dir=tmp_path)
    assert settings.mode is Mode.SANDBOX and settings.embedded_redis


def test_the_app_defaults_to_the_example_in_sandbox_mode_only(tmp_path: Path) -> None:
    sandbox = load_settings(data_dir=tmp_path)
    assert sandbox.app is None
    assert chosen_app(live=False, app=sandbox.app) == EXAMPLE_APP
    live = load_settings(**LIVE, redis_url="redis://h:6379/0")  # loads: a producer needs no app
    with pytest.raises(SettingsError) as info:
        chosen_app(live=True, app=live.app)
    assert info.value.setting == "SANDBOX_PLATFORM_APP"
    assert chosen_app(live=True, app="shop_tasks") == "shop_tasks"
    assert chosen_app(live=False, app="shop_tasks:app") == "shop_tasks:app"


def _cli(tmp_path: Path, *args: str, **settings: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox_platform", *args],
        env=platform_env(data_dir=tmp_path, **settings),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("redis_url", [None, ""], ids=["unset", "empty"])
def test_a_live_worker_without_a_redis_url_is_one_line_and_exit_2(
    tmp_path: Path, redis_url: str | None
) -> None:
    proc = _cli(tmp_path, "worker", **LIVE, app="workers", redis_url=redis_url)
    line = _one_line(proc, "SANDBOX_PLATFORM_REDIS_URL")
    assert "live mode needs a Redis URL" in line
    assert not list(tmp_path.glob("redis.*"))  # no embedded server was started


def test_a_live_worker_without_an_app_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = _cli(tmp_path, "worker", **LIVE, redis_url="redis://127.0.0.1:1/0")
    line = _one_line(proc, "SANDBOX_PLATFORM_APP")
    assert "live mode needs your app module" in line


def test_a_live_worker_with_app_given_by_option_passes_the_app_check(tmp_path: Path) -> None:
    """--app is enough: the command goes on to load it (here: a module that is not there)."""
    proc = _cli(
        tmp_path, "worker", "--app", "no_such_app_module", **LIVE, redis_url="redis://h:1/0"
    )
    line = _one_line(proc, "no_such_app_module")
    assert "SANDBOX_PLATFORM_APP:" not in line
