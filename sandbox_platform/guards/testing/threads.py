"""Calling a guard's hooks from many threads at once: a worker's threads share its guards."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["run_concurrently"]

T = TypeVar("T")


def run_concurrently(
    fn: Callable[[int], T], *, threads: int = 8, times: int | None = None, timeout: float = 30.0
) -> list[T]:
    """``fn(0) .. fn(times - 1)`` (``times`` defaults to ``threads``) on ``threads`` threads
    that start together; the results in call order. The first call's error (by index) is
    raised once every thread is done, with a note of how many calls failed."""
    count = threads if times is None else times
    if threads < 1 or count < 0:
        raise ValueError(f"threads must be >= 1 and times >= 0, got {threads} and {count}")
    workers = min(threads, count)
    results: list[Any] = [None] * count
    errors: dict[int, BaseException] = {}
    start = threading.Barrier(workers, timeout=timeout) if workers else None

    def work(first: int) -> None:
        assert start is not None
        try:
            start.wait()
        except threading.BrokenBarrierError as exc:  # another thread never started
            errors[first] = exc
            return
        for index in range(first, count, workers):
            try:
                results[index] = fn(index)
            except BaseException as exc:  # handed to the caller below
                errors[index] = exc

    pool = [
        threading.Thread(target=work, args=(n,), name=f"run-concurrently-{n}", daemon=True)
        for n in range(workers)
    ]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout)
    if any(thread.is_alive() for thread in pool):
        raise TimeoutError(f"run_concurrently: calls still running after {timeout:g}s")
    if errors:
        first = errors[min(errors)]
        first.add_note(f"call {min(errors)} of {count}; {len(errors)} call(s) failed")
        raise first
    return results
