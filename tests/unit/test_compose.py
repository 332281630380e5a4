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
PLATFORM = ["migrate", "worker", "beat", "flower"]


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
