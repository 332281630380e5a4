"""The one function that chooses how a guarded job is published (app/enqueue.py); the
integration tests (test_enqueue_entry_points, test_bulk_enqueue, test_publish_once) publish
through each strategy on a real broker."""

from __future__ import annotations

from typing import Any, cast

import pytest

from sandbox_platform.app.enqueue import Strategy, choose_strategy
from sandbox_platform.guards.base import EnqueueCall, Services


def _call(**options: Any) -> EnqueueCall:
    return EnqueueCall("t", (), {}, dict(options), {}, (), cast(Services, None))


@pytest.mark.parametrize(
    ("options", "existing", "strategy"),
    [
        ({}, "first-job", Strategy.EXISTING),
        ({"declare": []}, "first-job", Strategy.EXISTING),  # an answer wins over any route
        ({}, None, Strategy.CELERY),  # a route's first publish declares its queue
        ({"declare": [object()]}, None, Strategy.CELERY),  # the caller's own declarations
        ({"declare": []}, None, Strategy.DIRECT),  # a route published before
    ],
)
def test_the_strategy_follows_the_answer_and_the_route(
    options: dict[str, Any], existing: str | None, strategy: Strategy
) -> None:
    assert choose_strategy(_call(**options), existing) is strategy
