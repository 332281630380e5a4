"""The job loop (core/job_loop.py) and async irreversible actions (guards/dry_run.py), alone:
a body runs in the context it is given, errors come back, a time limit cancels; an async
action is awaited in live mode and simulated (sync or async simulator) in sandbox.

Async jobs through a real worker: tests/integration/test_async_jobs.py."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from typing import Any

import pytest

from sandbox_platform.core.errors import SimulationError
from sandbox_platform.core.job_loop import AsyncTimeLimitExceeded, JobLoop, on_job_loop
from sandbox_platform.core.settings import Mode
from sandbox_platform.guards.dry_run import DryRunLock

_who: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


def _context_of(name: str) -> contextvars.Context:
    context = contextvars.copy_context()
    context.run(_who.set, name)
    return context


async def _report(pause: float) -> tuple[str, str]:
    await asyncio.sleep(pause)
    return _who.get(), threading.current_thread().name


def test_bodies_interleave_on_one_loop_each_in_its_own_context() -> None:
    loop = JobLoop("test-job-loop")
    results: dict[int, tuple[str, str]] = {}

    def job(n: int) -> None:
        results[n] = loop.run(_report(0.05 * (n % 3)), context=_context_of(f"job-{n}"))

    threads = [threading.Thread(target=job, args=(n,)) for n in range(20)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert {n: who for n, (who, _) in results.items()} == {n: f"job-{n}" for n in range(20)}
    assert {thread for _, thread in results.values()} == {"test-job-loop"}
    assert time.monotonic() - started < 20 * 0.05  # interleaved, not one after another
    assert _who.get() == "nobody"  # nothing leaked into the caller


def test_an_error_of_the_body_is_raised_to_the_caller() -> None:
    async def fail() -> None:
        await asyncio.sleep(0)
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        JobLoop().run(fail(), context=contextvars.copy_context())


def test_a_body_past_its_limit_is_cancelled_and_the_loop_goes_on() -> None:
    loop = JobLoop()
    cancelled = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(AsyncTimeLimitExceeded) as caught:
        loop.run(slow(), context=contextvars.copy_context(), limit=0.2)
    assert caught.value.finished and caught.value.limit == 0.2
    assert cancelled.is_set()
    assert loop.run(_report(0), context=_context_of("next"))[0] == "next"


def test_a_body_that_ignores_its_cancellation_is_given_up_on() -> None:
    loop = JobLoop()

    async def stubborn() -> None:
        time.sleep(1.0)  # blocks the loop: cannot be cancelled until it returns

    with pytest.raises(AsyncTimeLimitExceeded) as caught:
        loop.run(stubborn(), context=contextvars.copy_context(), limit=0.1)
    assert not caught.value.finished


def test_the_loop_cannot_wait_on_itself() -> None:
    loop = JobLoop()

    async def nested() -> Any:
        inner = _report(0)
        return loop.run(inner, context=contextvars.copy_context())

    with pytest.raises(RuntimeError, match="job loop itself"):
        loop.run(nested(), context=contextvars.copy_context())
    assert not on_job_loop()


# -- @irreversible on async def ------------------------------------------------------------


def _lock(mode: Mode, events: list[dict[str, Any]]) -> DryRunLock:
    return DryRunLock(mode, sink=events.append)


async def _charge(order_id: str) -> dict[str, str]:
    await asyncio.sleep(0)
    return {"charge_id": f"real-{order_id}"}


def test_live_mode_awaits_the_async_action() -> None:
    events: list[dict[str, Any]] = []
    result = asyncio.run(_lock(Mode.LIVE, events).execute_async("payment", _charge, "o1"))
    assert result == {"charge_id": "real-o1"} and events == []


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_sandbox_mode_records_and_answers_with_the_simulation(kind: str) -> None:
    events: list[dict[str, Any]] = []

    async def simulate_async(order_id: str) -> dict[str, str]:
        return {"charge_id": f"sim-{order_id}"}

    def simulate_sync(order_id: str) -> dict[str, str]:
        return {"charge_id": f"sim-{order_id}"}

    simulate = simulate_async if kind == "async" else simulate_sync
    lock = _lock(Mode.SANDBOX, events)
    result = asyncio.run(lock.execute_async("payment", _charge, "o1", simulate=simulate))
    assert result == {"charge_id": "sim-o1"}
    assert [(e["action"], e["arguments"], e["simulated_result"]) for e in events] == [
        ("payment", {"order_id": "o1"}, {"charge_id": "sim-o1"})
    ]


def test_an_async_simulator_that_raises_is_a_simulation_error() -> None:
    events: list[dict[str, Any]] = []

    async def broken(order_id: str) -> None:
        raise ValueError("no such order")

    lock = _lock(Mode.SANDBOX, events)
    with pytest.raises(SimulationError, match="payment"):
        asyncio.run(lock.execute_async("payment", _charge, "o1", simulate=broken))
    assert [e["error"] for e in events] == ["ValueError('no such order')"]


def test_irreversible_keeps_an_async_def_async() -> None:
    import inspect

    from sandbox_platform.guards.dry_run import irreversible

    marked = irreversible("payment")(_charge)
    assert inspect.iscoroutinefunction(marked)
    assert marked.__sandbox_platform_action__ == "payment"  # type: ignore[attr-defined]
    assert not inspect.iscoroutinefunction(irreversible("payment")(lambda: None))
