"""Each test builds its harnesses with ``make_harness``; they are closed (their Redis keys
deleted) when the test ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sandbox_platform.guards.base import Guard
from sandbox_platform.testing import GuardHarness

MakeHarness = Callable[..., GuardHarness]


@pytest.fixture
def make_harness() -> Iterator[MakeHarness]:
    made: list[GuardHarness] = []

    def make(*guards: Guard, **kwargs: Any) -> GuardHarness:
        harness = GuardHarness(*guards, **kwargs)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()
