"""JSON mode means every line is JSON: a real ``sandbox-platform worker`` and ``beat``.

Both run as the CLI runs them (a supervisor and its ``celery`` child), their stdout and
stderr in one file; a task that prints and warns runs; both are stopped. Every line of the
combined output must parse as a JSON object, Celery's banner, its warnings and its shutdown
notes included; the banners' facts (concurrency, log level) must be the true ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import platform_env, wait_until

pytestmark = pytest.mark.slow

NOISY_APP = """
import warnings

from sandbox_platform.app.factory import create_app
from sandbox_platform.tasks import guarded_task

app = create_app()


@guarded_task(app, name="json_app.noisy")
def noisy(word: str) -> str:
    print("plain print from task code", word)
    warnings.warn("a warning from task code", UserWarning, stacklevel=1)
    import structlog

    structlog.get_logger("json_app").info("noisy done", word=word)
    return word
"""


def non_json_lines(text: str) -> list[str]:
    """Every line of ``text`` that is not one JSON object (blank lines included)."""
    bad = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        if not isinstance(record, dict):
            bad.append(line)
    return bad


def events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _start(args: list[str], env: dict[str, str], out: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with out.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "sandbox_platform", *args],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the supervisor (it stops its child warmly); SIGKILL its session if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def test_the_check_catches_a_plain_line() -> None:
    good = '{"event": "x"}\n{"event": "y", "level": "info"}'
    assert non_json_lines(good) == []
    assert non_json_lines(good + "\n -------------- worker1@vm v5 (banner)") == [
        " -------------- worker1@vm v5 (banner)"
    ]
    assert non_json_lines(good + "\n\n") == [""]
    assert non_json_lines("[1, 2]") == ["[1, 2]"]


def test_worker_and_beat_write_only_json(
    platform_app: Any, platform_settings_kwargs: dict[str, object], tmp_path: Path
) -> None:
    (tmp_path / "json_app.py").write_text(textwrap.dedent(NOISY_APP))
    env = platform_env(**platform_settings_kwargs, log_format="json", log_level="INFO")
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), os.getcwd()])
    out = tmp_path / "combined.log"
    started = []
    try:
        started.append(
            _start(["worker", "--processes", "1", "--app", "json_app"], env, out, tmp_path)
        )
        started.append(_start(["beat"], env, out, tmp_path))
        wait_until(
            lambda: any(e.get("event") == "worker ready" for e in events(out.read_text())),
            timeout=90,
            message="the worker did not get ready",
        )
        platform_app.send_task("json_app.noisy", args=["hello"])
        wait_until(
            lambda: any(e.get("event") == "noisy done" for e in events(out.read_text())),
            timeout=60,
            message="the task did not run",
        )
        wait_until(
            lambda: any(e.get("event") == "heartbeat tick" for e in events(out.read_text())),
            timeout=60,
            message="no beat-driven heartbeat tick ran",
        )
    finally:
        for proc in started:
            _stop(proc)
    text = out.read_text()
    assert non_json_lines(text) == [], text
    seen = events(text)
    names = [e.get("event") for e in seen]
    worker_start = next(e for e in seen if e.get("event") == "celery worker starting")
    assert worker_start["concurrency"] == 1
    assert worker_start["pool"] == "solo"
    assert worker_start["log_level"] == "INFO"
    assert "json_app.noisy" in worker_start["tasks"]
    beat_start = next(e for e in seen if e.get("event") == "celery beat starting")
    assert beat_start["log_level"] == "INFO"
    assert any("plain print from task code hello" in str(n) for n in names)
    assert any(
        e.get("logger") == "py.warnings" and "a warning from task code" in str(e["event"])
        for e in seen
    )
    assert any("Warm shutdown" in str(n) for n in names)
    tokens = [str(n) for n in names if "fencing token" in str(n)]
    assert tokens and all("***" not in t for t in tokens), tokens


def test_console_beat_banner_names_the_level_in_force(
    platform_settings_kwargs: dict[str, object], tmp_path: Path
) -> None:
    """Celery's beat says ``@%WARNING`` by default; the platform logs at its LOG_LEVEL."""
    env = platform_env(**platform_settings_kwargs, log_format="console", log_level="INFO")
    out = tmp_path / "beat.log"
    proc = _start(["beat"], env, out, Path.cwd())
    try:
        wait_until(lambda: "logfile ->" in out.read_text(), timeout=60, message="no beat banner")
    finally:
        _stop(proc)
    banner_line = next(line for line in out.read_text().splitlines() if "logfile ->" in line)
    assert banner_line.rstrip().endswith("@%INFO"), banner_line
