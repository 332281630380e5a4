"""docker-compose.yml is valid YAML with the services the design names, and every platform
command in it is a real command here (run with --help)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import platform_env

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
PLATFORM = ["migrate", "worker", "beat", "flower", "dashboard"]


def test_services_present() -> None:
    assert {"redis", "postgres", *PLATFORM} <= set(COMPOSE["services"])


def test_redis_is_durable_and_never_evicts() -> None:
    command = COMPOSE["services"]["redis"]["command"]
    assert "--appendonly" in command and command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


@pytest.mark.parametrize("service", PLATFORM)
def test_platform_commands_are_real(service: str, tmp_path) -> None:
    command = list(COMPOSE["services"][service]["command"])
    program = command[0]
    argv = (
        [sys.executable, "-m", "sandbox_platform"]
        if program == "sandbox-platform"
        else [sys.executable, "-m", "celery"]
    )
    # keep the subcommand path, drop option values that need the services; ask for --help
    words = [w for w in command[1:] if not w.startswith("-")]
    if program == "celery":
        words = command[1:4]
    proc = subprocess.run(
        [*argv, *words, "--help"],
        env=platform_env(data_dir=tmp_path, redis_url="redis://127.0.0.1:6379/15"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"{shlex.join(command)}: {proc.stderr[-2000:]}"


def _help_text(subcommand: list[str], tmp_path: Path) -> str:
    env = platform_env(data_dir=tmp_path, redis_url="redis://127.0.0.1:6379/15")
    env["COLUMNS"] = "200"  # rich wraps help at 80 columns on a pipe
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox_platform", *subcommand, "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.parametrize("service", PLATFORM)
def test_platform_command_options_are_real(service: str, tmp_path: Path) -> None:
    """Every --option a platform service passes is one its command documents."""
    command = list(COMPOSE["services"][service]["command"])
    assert command[0] == "sandbox-platform"
    options = [w.split("=", 1)[0] for w in command[1:] if w.startswith("--")]
    first_option = next((i for i, w in enumerate(command) if w.startswith("-")), len(command))
    text = _help_text(command[1:first_option], tmp_path)
    for option in options:
        assert option in text, f"{shlex.join(command)}: {option} is not an option"


def test_worker_sends_events_for_flower() -> None:
    assert "--events" in COMPOSE["services"]["worker"]["command"]


def test_flower_credentials_come_from_the_environment_only() -> None:
    flower = COMPOSE["services"]["flower"]
    command = flower["command"]
    assert command[:2] == ["sandbox-platform", "flower"]
    assert not any("auth" in word.lower() or "${" in word for word in command), command
    auth = flower["environment"]["SANDBOX_PLATFORM_FLOWER_BASIC_AUTH"]
    assert auth.startswith("${FLOWER_BASIC_AUTH:?"), auth
    # the merge keeps every other platform setting
    worker_env = COMPOSE["services"]["worker"]["environment"]
    assert worker_env.items() <= flower["environment"].items()
    assert "SANDBOX_PLATFORM_FLOWER_BASIC_AUTH" not in worker_env
