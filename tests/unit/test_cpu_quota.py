"""The worker's default process count follows the container's CPU limit (fake cgroup trees)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox_platform.procs.cpu_quota import cgroup_cpu_limit, default_processes


def _v2(root: Path, text: str) -> Path:
    (root / "cpu.max").write_text(text)
    return root


def _v1(root: Path, quota: str, period: str = "100000", directory: str = "cpu") -> Path:
    (root / directory).mkdir(parents=True, exist_ok=True)
    (root / directory / "cpu.cfs_quota_us").write_text(quota + "\n")
    (root / directory / "cpu.cfs_period_us").write_text(period + "\n")
    return root


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("200000 100000\n", 2),  # limits: cpu: "2"
        ("150000 100000\n", 2),  # 1500m: rounded up
        ("100001 100000\n", 2),  # a hair over one CPU is two
        ("50000 100000\n", 1),  # 500m: at least one
        ("1000 100000\n", 1),
        ("400000 100000\n", 4),
        ("6400000 100000\n", 16),  # more than the cores: capped
    ],
)
def test_cgroup_v2_quota(tmp_path: Path, text: str, expected: int) -> None:
    assert default_processes(_v2(tmp_path, text), cpu_count=16) == min(expected, 16)


def test_v2_quota_is_capped_at_the_cores(tmp_path: Path) -> None:
    assert default_processes(_v2(tmp_path, "800000 100000"), cpu_count=2) == 2


@pytest.mark.parametrize("text", ["max 100000\n", "", "garbage\n", "0 100000", "100000 0", "1 2 3"])
def test_v2_without_a_usable_quota_is_the_cores(tmp_path: Path, text: str) -> None:
    root = _v2(tmp_path, text)
    assert cgroup_cpu_limit(root) is None
    assert default_processes(root, cpu_count=6) == 6


@pytest.mark.parametrize("directory", ["cpu", "cpu,cpuacct", "."])
def test_cgroup_v1_quota(tmp_path: Path, directory: str) -> None:
    root = _v1(tmp_path, "250000", "100000", directory)
    assert cgroup_cpu_limit(root) == (250000, 100000)
    assert default_processes(root, cpu_count=8) == 3


def test_v1_period_other_than_the_default(tmp_path: Path) -> None:
    assert default_processes(_v1(tmp_path, "50000", "25000"), cpu_count=8) == 2


@pytest.mark.parametrize(("quota", "period"), [("-1", "100000"), ("x", "100000"), ("1", "")])
def test_v1_without_a_usable_quota_is_the_cores(tmp_path: Path, quota: str, period: str) -> None:
    root = _v1(tmp_path, quota, period)
    assert cgroup_cpu_limit(root) is None
    assert default_processes(root, cpu_count=3) == 3


def test_v2_wins_over_v1_files(tmp_path: Path) -> None:
    _v1(tmp_path, "800000")
    assert default_processes(_v2(tmp_path, "100000 100000"), cpu_count=8) == 1


def test_no_cgroup_files_is_os_cpu_count(tmp_path: Path) -> None:
    """Existing behaviour, unchanged: no quota means one process per core."""
    assert cgroup_cpu_limit(tmp_path / "missing") is None
    assert default_processes(tmp_path / "missing") == (os.cpu_count() or 1)


def test_unreadable_quota_file_is_no_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").mkdir()  # not a file: skipped
    assert cgroup_cpu_limit(tmp_path) is None


def test_worker_option_documents_the_default() -> None:
    import typer.main

    from sandbox_platform.cli import app

    worker = typer.main.get_command(app).commands["worker"]  # type: ignore[attr-defined]
    (option,) = [p for p in worker.params if p.name == "processes"]
    assert option.default is None  # None: default_processes() decides at start
    assert "CPU limit" in (option.help or "")


class _RecordingSupervisor:
    """Stands in for the supervisor: records the consumer commands instead of starting them."""

    started: list[list[str]] = []

    def __init__(self, commands: list[list[str]], env: dict[str, str], **_: object) -> None:
        type(self).started = [list(c) for c in commands]

    def run(self) -> int:
        return 0


@pytest.mark.parametrize(("argv", "expected"), [([], 3), (["--processes", "5"], 5)])
def test_worker_starts_the_cgroup_default_unless_told(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str, argv: list[str], expected: int
) -> None:
    from typer.testing import CliRunner

    from sandbox_platform.cli import app, processes

    monkeypatch.setenv("SANDBOX_PLATFORM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SANDBOX_PLATFORM_REDIS_URL", redis_url)  # no embedded redis-server
    monkeypatch.setattr(processes, "default_processes", lambda: 3)
    monkeypatch.setattr(processes, "Supervisor", _RecordingSupervisor)
    result = CliRunner().invoke(app, ["worker", *argv])
    assert result.exit_code == 0, result.output
    names = [c[c.index("-n") + 1] for c in _RecordingSupervisor.started]
    assert names == [f"worker{i}@%h" for i in range(1, expected + 1)]


def test_worker_refuses_zero_processes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str
) -> None:
    from typer.testing import CliRunner

    from sandbox_platform.cli import app

    monkeypatch.setenv("SANDBOX_PLATFORM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SANDBOX_PLATFORM_REDIS_URL", redis_url)
    result = CliRunner().invoke(app, ["worker", "--processes", "0"])
    assert result.exit_code == 2
    assert "must be at least 1" in result.output
