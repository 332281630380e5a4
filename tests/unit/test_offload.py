"""``sandbox_platform.app.offload``: a call on the pool's thread sees the caller's context,
raises its own error unchanged, and a forked child gets a pool of its own."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from contextvars import ContextVar

import pytest

from sandbox_platform.app.offload import THREAD_NAME_PREFIX, offload, offload_executor

SEEN: ContextVar[str | None] = ContextVar("seen", default=None)


def _where(suffix: str) -> tuple[str | None, str]:
    found = SEEN.get()
    SEEN.set("changed on the thread")  # a copy: never seen by the caller
    return (f"{found}{suffix}" if found else None), threading.current_thread().name


def test_the_call_runs_on_a_pool_thread_in_a_copy_of_the_callers_context() -> None:
    async def main() -> None:
        SEEN.set("corr-x")
        value, thread = await offload(_where, suffix="!")
        assert value == "corr-x!"
        assert thread.startswith(THREAD_NAME_PREFIX) and thread != threading.current_thread().name
        assert SEEN.get() == "corr-x"
        # each call its own copy: nothing the previous call set on its thread is seen
        assert (await offload(_where, ""))[0] == "corr-x"

    asyncio.run(main())


def test_the_error_of_the_call_is_raised_unchanged() -> None:
    error = LookupError("from the thread")

    def fail() -> None:
        raise error

    async def main() -> None:
        with pytest.raises(LookupError) as raised:
            await offload(fail)
        assert raised.value is error

    asyncio.run(main())


def _in_child(queue: multiprocessing.Queue[object]) -> None:
    async def main() -> tuple[str | None, str]:
        return await asyncio.wait_for(offload(_where, ""), timeout=10)

    try:
        queue.put((os.getpid(), asyncio.run(main())[1]))
    except BaseException as error:  # reported to the parent, which fails the test
        queue.put(repr(error))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_gets_a_pool_of_its_own() -> None:
    parent_pool = offload_executor()
    asyncio.run(offload(_where, ""))  # the parent's pool has a thread now
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[object] = context.Queue()
    child = context.Process(target=_in_child, args=(queue,))
    child.start()
    try:
        reported = queue.get(timeout=30)
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
            child.join(10)
    assert isinstance(reported, tuple), reported
    pid, thread = reported
    assert pid != os.getpid() and thread.startswith(THREAD_NAME_PREFIX)
    assert offload_executor() is parent_pool  # the parent keeps its own
