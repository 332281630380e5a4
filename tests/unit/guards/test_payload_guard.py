"""The payload guard refuses, at the call site, arguments over the size limit or not JSON;
nothing else is published."""

from __future__ import annotations

import pytest

from sandbox_platform.core.errors import PayloadError
from sandbox_platform.guards.builtin import PayloadGuard
from tests.unit.guards.conftest import MakeHarness


def test_an_oversized_argument_is_refused_with_its_size_and_the_limit(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(PayloadGuard(), name="t.upload", settings={"payload_limit_bytes": 100})
    with pytest.raises(PayloadError) as caught:
        harness.enqueue(args=("x" * 200,))
    message = str(caught.value)
    assert message.startswith("t.upload: arguments are ")
    assert "over the limit of 100" in message
    assert "SANDBOX_PLATFORM_PAYLOAD_LIMIT_BYTES" in message


def test_arguments_within_the_limit_pass_untouched(make_harness: MakeHarness) -> None:
    harness = make_harness(PayloadGuard(), settings={"payload_limit_bytes": 100})
    call = harness.enqueue(args=("x" * 40,), kwargs={"n": 1})
    assert call.existing_id is None
    assert call.options == {}  # no header added: the guard only checks


def test_an_argument_that_is_not_json_is_refused_naming_where_it_is(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(PayloadGuard(), name="t.upload")
    with pytest.raises(PayloadError, match=r"not JSON-serialisable at kwargs\['when'\]"):
        harness.enqueue(args=(1,), kwargs={"when": object()})
