"""Settings: defaults, and one line naming the setting (exit code 2) for each bad value."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sandbox_platform.core.errors import IsolationError, SettingsError
from sandbox_platform.core.settings import Mode, database_identity, load_settings
from tests.helpers import platform_env


def test_defaults_are_sandbox_and_embedded(tmp_path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert settings.mode is Mode.SANDBOX
    assert settings.embedded_redis
    assert settings.active_database_url.startswith("sqlite:///")
    assert settings.log_format == "json"


def test_env_prefix_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_PLATFORM_MODE", "LIVE")
    monkeypatch.setenv("SANDBOX_PLATFORM_LIVE_DATABASE_URL", "postgresql://h/live")
    monkeypatch.setenv("SANDBOX_PLATFORM_DATABASE_URL", "postgresql://h/sandbox")
    monkeypatch.setenv("SANDBOX_PLATFORM_REDIS_URL", "redis://h:6379/0")
    settings = load_settings()
    assert settings.mode is Mode.LIVE
    assert settings.active_database_url == "postgresql://h/live"


@pytest.mark.parametrize(
    ("sandbox", "live"),
    [
        ("postgresql://u:p@localhost/db", "postgresql+psycopg://other@127.0.0.1:5432/db"),
        ("postgresql://127.0.0.1/db", "postgresql://[::1]:5432/db?sslmode=disable"),
        ("sqlite:///./x/../same.db", "sqlite:///same.db"),
    ],
)
def test_same_database_is_refused(sandbox: str, live: str, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(IsolationError) as info:
        load_settings(database_url=sandbox, live_database_url=live)
    assert info.value.setting == "SANDBOX_PLATFORM_LIVE_DATABASE_URL"


def test_different_databases_are_accepted() -> None:
    assert database_identity("postgresql://h/a") != database_identity("postgresql://h/b")
    assert database_identity("postgresql://h:5432/a") != database_identity("postgresql://h:5433/a")
    load_settings(database_url="postgresql://h/a", live_database_url="postgresql://h/b")


def test_live_without_live_database_is_refused() -> None:
    with pytest.raises(SettingsError, match="SANDBOX_PLATFORM_LIVE_DATABASE_URL"):
        load_settings(mode="live")


BAD_SETTINGS = [
    ({"MODE": "staging"}, "SANDBOX_PLATFORM_MODE"),
    ({"REDIS_URL": "localhost:6379"}, "SANDBOX_PLATFORM_REDIS_URL"),
    ({"REDIS_URL": "http://127.0.0.1:6379"}, "SANDBOX_PLATFORM_REDIS_URL"),
    ({"BROKER_URL": "nonsense"}, "SANDBOX_PLATFORM_BROKER_URL"),
    ({"DATABASE_URL": "not a url"}, "SANDBOX_PLATFORM_DATABASE_URL"),
    ({"DATABASE_URL": "mysql://h/db"}, "SANDBOX_PLATFORM_DATABASE_URL"),
    ({"LIVE_DATABASE_URL": "postgresql://"}, "SANDBOX_PLATFORM_LIVE_DATABASE_URL"),
    ({"MODE": "live"}, "SANDBOX_PLATFORM_LIVE_DATABASE_URL"),
    (
        {
            "DATABASE_URL": "postgresql://localhost/app",
            "LIVE_DATABASE_URL": "postgresql://127.0.0.1:5432/app",
        },
        "SANDBOX_PLATFORM_LIVE_DATABASE_URL",
    ),
    ({"VISIBILITY_TIMEOUT": "-5"}, "SANDBOX_PLATFORM_VISIBILITY_TIMEOUT"),
    ({"HEARTBEAT_INTERVAL": "soon"}, "SANDBOX_PLATFORM_HEARTBEAT_INTERVAL"),
    ({"LOG_FORMAT": "xml"}, "SANDBOX_PLATFORM_LOG_FORMAT"),
    ({"LOG_LEVEL": "LOUD"}, "SANDBOX_PLATFORM_LOG_LEVEL"),
    ({"PAYLOAD_LIMIT_BYTES": "0"}, "SANDBOX_PLATFORM_PAYLOAD_LIMIT_BYTES"),
]


@pytest.mark.parametrize(("env", "name"), BAD_SETTINGS, ids=[n for _, n in BAD_SETTINGS])
def test_cli_prints_one_line_and_exits_2(env: dict[str, str], name: str, tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox_platform", "settings"],
        env=platform_env(data_dir=tmp_path, **{k.lower(): v for k, v in env.items()}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert name in lines[0]
    assert "Traceback" not in proc.stderr


def test_celery_entry_point_exits_2_on_bad_setting(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers", "inspect", "ping"],
        env=platform_env(mode="bogus", data_dir=tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "SANDBOX_PLATFORM_MODE" in lines[0]


def test_public_dict_masks_credentials() -> None:
    settings = load_settings(redis_url="redis://:hunter2@127.0.0.1:6379/0")
    assert "hunter2" not in str(settings.public_dict())


def test_readme_configuration_table_lists_every_setting() -> None:
    """Docs match the code: each setting has its row in README's Configuration table."""
    from pathlib import Path

    from sandbox_platform.core.settings import ENV_PREFIX, Settings

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme[readme.index("## Configuration") : readme.index("## The seed's API")]
    rows = "\n".join(line for line in table.splitlines() if line.startswith("| `"))
    missing = []
    for name in Settings.model_fields:
        variable = ENV_PREFIX + name.upper()
        short = "_" + name.upper().rsplit("_", 1)[-1]  # `..._USER` / `_PASSWORD` rows
        if f"`{variable}`" not in rows and not (
            f"` / `{short}`" in rows and name.startswith("dashboard_")
        ):
            missing.append(variable)
    assert missing == []
