"""Repeats caught at enqueue (issue 21.3), without a broker: what :func:`record_duplicates`
sends in its one pipeline, the counter's exposition, and the line ``jobs show`` prints.
tests/integration/test_enqueue_duplicates.py runs it all with real workers."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, cast

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from sandbox_platform.app import enqueue
from sandbox_platform.cli.records import _summary
from sandbox_platform.core.context import IDEMPOTENCY_HEADER, bind_correlation_id
from sandbox_platform.guards.base import EnqueueCall, Services
from sandbox_platform.ops.metrics import DEDUPLICATED, count_in, field_name
from sandbox_platform.ops.prometheus import Snapshot, exposition


class _Pipe:
    """Records the commands queued; ``execute`` raises ``error`` when set."""

    def __init__(self, error: Exception | None = None) -> None:
        self.commands: list[tuple[str, tuple[Any, ...]]] = []
        self.executed = 0
        self.error = error

    def __getattr__(self, name: str) -> Any:
        return lambda *args: self.commands.append((name, args))

    def execute(self) -> list[Any]:
        self.executed += 1
        if self.error is not None:
            raise self.error
        return []


def _runtime(pipe: _Pipe) -> Any:
    settings = SimpleNamespace(key_prefix="sp", mode=SimpleNamespace(value="sandbox"))
    return SimpleNamespace(settings=settings, redis=SimpleNamespace(pipeline=lambda **_: pipe))


def _repeat(first: str, key: str | None = "t:k") -> EnqueueCall:
    headers = {IDEMPOTENCY_HEADER: key} if key else {}
    call = EnqueueCall("t", (), {}, {"headers": headers}, {}, (), cast(Services, None))
    call.existing_id = first
    return call


def test_repeats_are_pushed_and_counted_in_one_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = _Pipe()
    monkeypatch.setattr(enqueue, "runtime_for", lambda _app: _runtime(pipe))
    with bind_correlation_id("req-2"):
        enqueue.record_duplicates(object(), [_repeat("job-1"), _repeat("job-1")])
    assert pipe.executed == 1
    pushed = [args for name, args in pipe.commands if name == "rpush"]
    assert [key for key, _row in pushed] == ["sp:runs:{sandbox}:duplicates"] * 2
    rows = [json.loads(row) for _key, row in pushed]
    assert {(r["task_name"], r["idempotency_key"], r["duplicate_of"]) for r in rows} == {
        ("t", "t:k", "job-1")
    }
    assert {r["correlation_id"] for r in rows} == {"req-2"}
    assert len({r["event_key"] for r in rows}) == 2 and all(r["created_at"] for r in rows)
    counted = [args for name, args in pipe.commands if name == "hincrbyfloat"]
    field = field_name(DEDUPLICATED, {"task": "t"})
    assert ("sp:metrics:total", field, 2) in counted  # totals, and the current minute
    assert len(counted) == 2


def test_no_repeat_costs_no_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(enqueue, "runtime_for", lambda _app: pytest.fail("no runtime needed"))
    enqueue.record_duplicates(object(), [])


def test_redis_refusing_the_record_never_fails_the_enqueue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipe = _Pipe(redis.ConnectionError("refused"))
    monkeypatch.setattr(enqueue, "runtime_for", lambda _app: _runtime(pipe))
    enqueue.record_duplicates(object(), [_repeat("job-1")])
    assert pipe.executed == 1


def test_count_in_adds_to_totals_and_the_minute() -> None:
    pipe = _Pipe()
    count_in(cast(redis.client.Pipeline, pipe), "sp", DEDUPLICATED, {"task": "t"}, 3)
    names = [name for name, _args in pipe.commands]
    assert names == ["hincrbyfloat", "hincrbyfloat", "expire"]
    assert pipe.commands[1][1][0].startswith("sp:metrics:m:")


def test_the_deduplicated_counter_is_exposed_by_task() -> None:
    totals = {field_name(DEDUPLICATED, {"task": "shop.charge"}): 2.0}
    text = exposition(Snapshot(totals=totals)).decode()
    samples = [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "sandbox_platform_enqueue_deduplicated_total"
    ]
    assert samples == [({"task": "shop.charge"}, 2.0)]


def test_jobs_show_says_duplicate_of_job() -> None:
    entry = {
        "kind": "duplicate",
        "task_name": "shop.charge",
        "idempotency_key": "shop.charge:order-9",
        "duplicate_of": "job-1",
        "duplicate_of_correlation_id": "shop-req-8",
    }
    assert _summary(entry) == (
        "shop.charge: duplicate of job job-1 (correlation id shop-req-8), "
        "idempotency key shop.charge:order-9"
    )
    assert "duplicate of job job-1," in _summary({**entry, "duplicate_of_correlation_id": None})
