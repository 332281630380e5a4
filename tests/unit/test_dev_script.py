"""./dev, the quick start on a stock system Python (PEP 668): it creates or reuses the
virtual environment, installs the extra only when pyproject.toml changed, and runs the
command there. Its environment here is a fake one whose ``python`` logs how it was called,
so the script's own logic runs for real without installing anything."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "dev"
FAKE_PYTHON = """#!/bin/sh
echo "$*" >> "{log}"
{extra}
"""


def _executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _fake_venv(tmp_path: Path) -> tuple[Path, Path]:
    venv, log = tmp_path / "venv", tmp_path / "calls.log"
    _executable(venv / "bin" / "python", FAKE_PYTHON.format(log=log, extra=""))
    _executable(venv / "bin" / "pip", "#!/bin/sh\nexit 0\n")
    return venv, log


def _dev(*args: str, **env: str | Path) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SP_")}
    full.update({k: str(v) for k, v in env.items()})
    return subprocess.run(
        [str(SCRIPT), *args], env=full, capture_output=True, text=True, timeout=60
    )


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_help_names_every_command() -> None:
    proc = _dev("--help")
    assert proc.returncode == 0
    for command in ("demo", "test", "docs"):
        assert f"./dev [--dry-run] {command}" in proc.stdout


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["frobnicate"], "dev: unknown command 'frobnicate': demo, test or docs (./dev --help)"),
        ([], "dev: which command? demo, test or docs (./dev --help)"),
    ],
)
def test_a_bad_command_is_one_line(args: list[str], line: str) -> None:
    proc = _dev(*args)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [line]


def test_dry_run_reuses_an_existing_venv(tmp_path: Path) -> None:
    venv, log = _fake_venv(tmp_path)
    proc = _dev("--dry-run", "test", "-q", "tests/unit", SP_VENV=venv)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"would reuse {venv}",
        f"would install -e '.[dev]' into {venv}",
        f"would run {venv}/bin/python -m pytest -q tests/unit",
    ]
    assert _calls(log) == []  # a dry run runs nothing


def test_dry_run_creates_a_missing_venv(tmp_path: Path) -> None:
    venv = tmp_path / "absent"
    proc = _dev("--dry-run", "demo", SP_VENV=venv, SP_PYTHON=sys.executable)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"would create {venv} with {sys.executable} -m venv",
        f"would install -e '.[embedded]' into {venv}",
        f"would run {venv}/bin/python -m sandbox_platform demo",
    ]
    assert not venv.exists()


def test_docs_installs_the_docs_extra_and_serves_the_site(tmp_path: Path) -> None:
    venv, log = _fake_venv(tmp_path)
    dry = _dev("--dry-run", "docs", "--dev-addr", "127.0.0.1:8001", SP_VENV=venv)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        f"would reuse {venv}",
        f"would install -e '.[docs]' into {venv}",
        f"would run {venv}/bin/python -m mkdocs serve --dev-addr 127.0.0.1:8001",
    ]
    assert _calls(log) == []
    served = _dev("docs", SP_VENV=venv)
    assert served.returncode == 0, served.stderr
    assert _calls(log) == ["-m pip install --quiet -e .[docs]", "-m mkdocs serve"]
    assert (ROOT / "mkdocs.yml").is_file()  # what `mkdocs serve` reads, from the root


def test_installs_once_then_reuses(tmp_path: Path) -> None:
    venv, log = _fake_venv(tmp_path)
    first = _dev("test", "-q", "tests/unit", SP_VENV=venv)
    assert first.returncode == 0, first.stderr
    assert _calls(log) == ["-m pip install --quiet -e .[dev]", "-m pytest -q tests/unit"]
    second = _dev("test", "-x", SP_VENV=venv)
    assert second.returncode == 0, second.stderr
    assert _calls(log)[2:] == ["-m pytest -x"]  # pyproject.toml unchanged: no install
    dry = _dev("--dry-run", "test", SP_VENV=venv)
    assert "would skip installing .[dev]: installed for this pyproject.toml" in dry.stdout
    demo = _dev("demo", "--orders", "1", SP_VENV=venv)
    assert demo.returncode == 0, demo.stderr
    assert _calls(log)[3:] == [
        "-m pip install --quiet -e .[embedded]",  # another extra: installed once too
        "-m sandbox_platform demo --orders 1",
    ]


def test_a_changed_stamp_installs_again(tmp_path: Path) -> None:
    venv, log = _fake_venv(tmp_path)
    (venv / ".sandbox-platform-dev").write_text("an older pyproject.toml\n")
    assert _dev("test", SP_VENV=venv).returncode == 0
    assert _calls(log) == ["-m pip install --quiet -e .[dev]", "-m pytest"]


def test_a_python_without_venv_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    """Debian without python3-venv: `python3 -m venv` fails half way (no pip)."""
    log = tmp_path / "calls.log"
    no_venv = 'case "$*" in "-m venv"*) mkdir -p "$3/bin"; exit 1;; esac'
    python = _executable(tmp_path / "python3", FAKE_PYTHON.format(log=log, extra=no_venv))
    venv = tmp_path / "venv"
    proc = _dev("demo", SP_VENV=venv, SP_PYTHON=python)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == (
        f"dev: {python} -m venv {venv} failed (on Debian/Ubuntu: apt install python3-venv)"
    )
    assert not venv.exists()  # no half-made environment for the next run to reuse


def test_an_old_python_is_refused(tmp_path: Path) -> None:
    old = _executable(tmp_path / "python3", "#!/bin/sh\nexit 1\n")  # the version check fails
    proc = _dev("test", SP_VENV=tmp_path / "venv", SP_PYTHON=old)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"dev: {old} is not Python 3.11 or newer (set SP_PYTHON to one that is)"
    ]
