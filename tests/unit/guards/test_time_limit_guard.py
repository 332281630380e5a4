"""The time-limit guard, under a supervisor that sets the deadline directory, writes the running
job's deadline and message for the supervisor and removes it when the run ends; without the
directory, or for a job without a time limit, it writes nothing."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from sandbox_platform.core.context import MODE_HEADER
from sandbox_platform.guards.base import Outcome
from sandbox_platform.guards.builtin import TimeLimitGuard
from sandbox_platform.guards.builtin.time_limit import DEADLINE_DIR_ENV, deadline_file
from tests.unit.guards.conftest import MakeHarness


def test_the_running_jobs_deadline_is_written_then_removed(
    make_harness: MakeHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DEADLINE_DIR_ENV, str(tmp_path))
    harness = make_harness(TimeLimitGuard(), name="t.slow", time_limit=30)
    job = harness.job((1,), {"b": 2}, task_id="job-1", headers={MODE_HEADER: "sandbox"})
    before = time.time()
    assert harness.before_run(job) is None
    path = deadline_file(tmp_path, os.getpid())
    info = json.loads(path.read_text())
    assert (info["task_id"], info["task_name"], info["limit"]) == ("job-1", "t.slow", 30)
    assert before + 30 <= info["deadline"] <= time.time() + 30
    assert info["message"]["args"] == [1] and info["message"]["kwargs"] == {"b": 2}
    assert info["message"]["headers"][MODE_HEADER] == "sandbox"
    assert not path.with_suffix(".tmp").exists()

    harness.after_run(job, Outcome.succeeded(None))
    assert not path.exists()


def test_nothing_is_written_for_a_job_without_a_time_limit(
    make_harness: MakeHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DEADLINE_DIR_ENV, str(tmp_path))
    harness = make_harness(TimeLimitGuard())
    job = harness.job()
    assert harness.before_run(job) is None
    harness.after_run(job, Outcome.succeeded(None))
    assert list(tmp_path.iterdir()) == []


def test_outside_a_supervisor_nothing_is_watched(make_harness: MakeHarness) -> None:
    harness = make_harness(TimeLimitGuard(), time_limit=30)  # no deadline directory
    job = harness.job()
    assert harness.before_run(job) is None
    assert repr(job.state) == "GuardState()"  # no deadline file to remove after the run
    harness.after_run(job, Outcome.succeeded(None))
