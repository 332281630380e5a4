"""deploy/kubernetes: valid YAML, and every platform command and probe in it is a real
command here (its --help runs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import platform_env

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))


def _commands() -> list[list[str]]:
    found = []
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            spec = (doc or {}).get("spec", {})
            pod = spec.get("template", {}).get("spec", {})
            for container in pod.get("containers", []):
                found.append(container["command"])
                for probe in ("livenessProbe", "readinessProbe"):
                    if probe in container:
                        found.append(container[probe]["exec"]["command"])
    return found


def test_manifests_parse_and_have_commands() -> None:
    assert MANIFESTS
    assert len(_commands()) >= 5


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c[:3]))
def test_commands_are_real(command: list[str], tmp_path: Path) -> None:
    assert command[0] == "sandbox-platform"
    subcommand = command[1:3] if command[1] == "db" else command[1:2]
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox_platform", *subcommand, "--help"],
        env=platform_env(data_dir=tmp_path, redis_url="redis://127.0.0.1:6379/15"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_readiness_probes_skip_only_known_checks() -> None:
    from sandbox_platform.ops.readiness import CHECK_NAMES

    for command in _commands():
        if command[1] == "readiness" and "--skip" in command:
            names = command[command.index("--skip") + 1].split(",")
            assert set(names) <= set(CHECK_NAMES), names
