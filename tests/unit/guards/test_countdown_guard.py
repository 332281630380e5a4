"""The countdown guard refuses, at the call site, a countdown or ETA the broker would
redeliver before it is due, and a delay of the wrong kind; shorter delays pass."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sandbox_platform.core.errors import CountdownTooLongError, InvalidDelayError
from sandbox_platform.guards.builtin import CountdownGuard
from tests.unit.guards.conftest import MakeHarness


def test_a_countdown_past_the_visibility_timeout_is_refused(make_harness: MakeHarness) -> None:
    harness = make_harness(CountdownGuard(), name="t.later", settings={"visibility_timeout": 60})
    with pytest.raises(CountdownTooLongError) as caught:
        harness.enqueue(args=(1,), countdown=60)
    message = str(caught.value)
    assert message.startswith("t.later: countdown of 60s is not shorter than")
    assert "visibility timeout of 60s" in message
    assert "SANDBOX_PLATFORM_VISIBILITY_TIMEOUT" in message
    with pytest.raises(CountdownTooLongError):
        harness.enqueue(eta=datetime.now(UTC) + timedelta(minutes=5))


def test_on_rabbitmq_the_consumer_timeout_is_the_bound(make_harness: MakeHarness) -> None:
    harness = make_harness(
        CountdownGuard(),
        settings={"broker_url": "amqp://guest@127.0.0.1:5672//", "consumer_timeout": 30},
    )
    harness.enqueue(countdown=29)
    with pytest.raises(CountdownTooLongError, match="SANDBOX_PLATFORM_CONSUMER_TIMEOUT"):
        harness.enqueue(countdown=30)


def test_a_shorter_delay_or_none_passes(make_harness: MakeHarness) -> None:
    harness = make_harness(CountdownGuard(), settings={"visibility_timeout": 60})
    harness.enqueue(countdown=59.5)
    harness.enqueue(eta=(datetime.now(UTC) + timedelta(seconds=30)).isoformat())
    harness.enqueue()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"countdown": "soon"}, "countdown must be a number of seconds, got str 'soon'"),
        ({"countdown": -1}, "countdown must be finite and >= 0"),
        ({"countdown": float("inf")}, "countdown must be finite and >= 0"),
        ({"eta": "tomorrow"}, "eta 'tomorrow' is not an ISO 8601 time"),
        ({"countdown": 1, "eta": datetime.now(UTC)}, "give countdown or eta, not both"),
    ],
)
def test_a_delay_of_the_wrong_kind_is_refused(
    make_harness: MakeHarness, options: dict[str, Any], match: str
) -> None:
    harness = make_harness(CountdownGuard(), name="t.later")
    with pytest.raises(InvalidDelayError, match=rf"^t\.later: {re.escape(match)}"):
        harness.enqueue(**options)
