"""The harness itself: options checked as at decoration, hooks wrapped as the pipeline wraps
them, its Redis keys gone when it closes, and ``run_concurrently``'s results and errors."""

from __future__ import annotations

import threading

import pytest
import redis

from sandbox_platform.coordination.admission import AdmissionRequest
from sandbox_platform.core.errors import EnqueueError
from sandbox_platform.guards.base import EnqueueCall, Guard, Job, Option, Outcome
from sandbox_platform.guards.builtin import IdempotencyGuard
from sandbox_platform.guards.pipeline import GuardHookError
from sandbox_platform.testing import GuardHarness, default_redis_url, run_concurrently
from tests.unit.guards.conftest import MakeHarness


class Broken(Guard):
    name = "broken"
    options = {"level": Option(default=1, check=lambda _c, v: int(v))}

    def at_enqueue(self, call: EnqueueCall) -> None:
        raise RuntimeError("enqueue bug")

    def contribute(self, job: Job, request: AdmissionRequest) -> None:
        raise RuntimeError("admission bug")

    def after_run(self, job: Job, outcome: Outcome) -> None:
        raise RuntimeError("after bug")


def test_options_are_resolved_and_unknown_ones_refused(make_harness: MakeHarness) -> None:
    assert make_harness(Broken()).task_options == {"level": 1}
    assert make_harness(Broken(), options={"level": "3"}).task_options == {"level": 3}
    with pytest.raises(ValueError, match=r"no guard of the harness declares \['levle'\]"):
        make_harness(Broken(), options={"levle": 3})


def test_a_hooks_unexpected_error_is_wrapped_as_the_pipeline_wraps_it(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(Broken(), name="t.b")
    with pytest.raises(EnqueueError, match=r"^t\.b: guard 'broken' failed in at_enqueue"):
        harness.enqueue()
    with pytest.raises(GuardHookError, match="guard 'broken' failed in contribute"):
        harness.admit(harness.job())
    with pytest.raises(GuardHookError, match="failed in after_run"):
        harness.after_run(harness.job(), Outcome.succeeded(None))
    # no guard decides on an error: the pipeline's own dead letter
    assert harness.error(harness.job(), ValueError()).reason == "failed"


def test_its_redis_keys_are_deleted_when_it_closes() -> None:
    client = redis.Redis.from_url(default_redis_url())
    harness = GuardHarness(IdempotencyGuard(), options={"idempotency_key": "k"})
    harness.admit(harness.job())
    pattern = f"{harness.prefix}:*"
    assert list(client.scan_iter(match=pattern))
    other = GuardHarness(IdempotencyGuard(), options={"idempotency_key": "k"}, redis_client=client)
    other.admit(other.job())
    harness.close()
    assert list(client.scan_iter(match=pattern)) == []
    assert list(client.scan_iter(match=f"{other.prefix}:*"))  # another harness's keys stay
    other.close()
    assert list(client.scan_iter(match=f"{other.prefix}:*")) == []
    client.close()


def test_run_concurrently_runs_on_many_threads_and_keeps_call_order() -> None:
    names: set[str] = set()
    lock = threading.Lock()

    def square(n: int) -> int:
        with lock:
            names.add(threading.current_thread().name)
        return n * n

    assert run_concurrently(square, threads=4, times=10) == [n * n for n in range(10)]
    assert len(names) == 4
    assert run_concurrently(square, threads=3, times=0) == []


def test_run_concurrently_raises_the_first_calls_error() -> None:
    def fail_odd(n: int) -> int:
        if n % 2:
            raise ValueError(f"call {n}")
        return n

    with pytest.raises(ValueError, match="call 1") as caught:
        run_concurrently(fail_odd, threads=4, times=8)
    assert "4 call(s) failed" in caught.value.__notes__[0]
