"""A ticker on the running event loop: how long a piece of async work took, and the largest
gap between two ticks meanwhile (a loop the work blocks misses ticks). Used by
tests/integration/test_async_enqueue.py and bench/bench_async_enqueue.py."""

from __future__ import annotations

import asyncio
import gc
import itertools
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["TICK", "ticking"]

T = TypeVar("T")

#: seconds between two ticks
TICK = 0.010


async def ticking(
    work: Callable[[], Awaitable[T]], *, collect_first: bool = False
) -> tuple[T, float, float]:
    """Run ``work`` while a ticker records ``loop.time()`` every :data:`TICK`; return its
    value, the seconds it took and the largest gap between two ticks (from a little before
    it started to a little after it ended). ``collect_first``: a full garbage collection
    first, so that none (tens of ms with the GIL held) is due meanwhile."""
    loop = asyncio.get_running_loop()
    ticks: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            ticks.append(loop.time())
            await asyncio.sleep(TICK)

    if collect_first:
        gc.collect()
    running = asyncio.create_task(ticker())
    await asyncio.sleep(3 * TICK)  # the ticker is running
    started = loop.time()
    try:
        value = await work()
    finally:
        elapsed = loop.time() - started
        await asyncio.sleep(3 * TICK)  # a gap at the very end is measured too
        done.set()
        await running
    return value, elapsed, max(b - a for a, b in itertools.pairwise(ticks))
