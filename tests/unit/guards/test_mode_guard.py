"""The mode guard: a message stamped with the other mode is dead-lettered unrun, never failed;
a message of the worker's mode, or one without a stamp, runs."""

from __future__ import annotations

import pytest

from sandbox_platform.core.context import MODE_HEADER
from sandbox_platform.guards.builtin import ModeGuard
from tests.unit.guards.conftest import MakeHarness


@pytest.mark.parametrize(("worker", "message"), [("sandbox", "live"), ("live", "sandbox")])
def test_a_message_of_the_other_mode_is_dead_lettered_unrun(
    make_harness: MakeHarness, worker: str, message: str
) -> None:
    harness = make_harness(ModeGuard(), settings={"mode": worker})
    outcome = harness.before_run(harness.job(headers={MODE_HEADER: message}))
    assert outcome is not None
    assert (outcome.kind, outcome.reason) == ("dead_letter", "wrong_mode")
    assert outcome.detail == f"message enqueued in {message} mode reached a {worker} worker"
    assert outcome.failed is False  # refused, not a failure of the job
    assert outcome.record is False


@pytest.mark.parametrize("worker", ["sandbox", "live"])
def test_a_message_of_the_workers_mode_or_unstamped_runs(
    make_harness: MakeHarness, worker: str
) -> None:
    harness = make_harness(ModeGuard(), settings={"mode": worker})
    assert harness.before_run(harness.job(headers={MODE_HEADER: worker})) is None
    assert harness.before_run(harness.job()) is None  # published by name, without a stamp
