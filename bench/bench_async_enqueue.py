"""Benchmark the async enqueue against the sync one: the cost per call, and the event loop's
largest gap while it runs.

Run::

    PYTHONPATH=. .venv/bin/python bench/bench_async_enqueue.py [--n 2000] [--runs 3]
        [--gc-freeze] [--redis-url redis://127.0.0.1:6379/0]

Without ``--redis-url`` it starts a private ``redis-server`` on a free loopback port (and
stops it by its pid at the end), so nothing else on the machine flushes or pauses it. For
each of two guarded tasks (no options; ``idempotency_key``, so each call takes the
enqueue-side dedupe too) it measures, ``--runs`` times:

* ``sync``: ``task.delay(...)`` ``--n`` times one after the other;
* ``async seq``: ``await task.delay_async(...)`` ``--n`` times one after the other;
* ``async gather``: ``--n`` ``task.delay_async(...)`` at once under ``asyncio.gather``;
* ``async many``: one ``await task.delay_many_async(...)`` of ``--n`` jobs;

and prints the median microseconds per call (wall time / n, min-max over the runs) and, for
the async modes, the largest gap between two ticks of a 10 ms ticker on the same loop (over
all runs), beside the largest gap of the same ticker on a loop that only sleeps 0.5 s (``loop
idle``: what the machine itself adds). The pool is warmed (its threads and broker
connections made) before measuring. The jobs go to
the queue ``bench_async`` (no worker takes them); it and the tasks' idempotency records are
deleted after each task's runs.

The largest gaps are mostly the garbage collector's full passes (a gen-2 collection of this
process's heap holds the GIL for ~80 ms, whichever thread triggers it); ``--gc-freeze``
moves the start-up heap out of the collector's reach, as a long-running app may do.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sandbox_platform import create_app, load_settings
from sandbox_platform.app.offload import MAX_WORKERS
from sandbox_platform.db import migrate
from sandbox_platform.tasks import guarded_task
from tests.ticker import ticking


@contextmanager
def private_redis() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="sp-bench-redis-")
    proc = subprocess.Popen(
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--dir", workdir),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        proc.kill()
        proc.wait(10)


def measure(task: Any, n: int, counter: Iterator[int]) -> dict[str, tuple[float, float]]:
    """One run of the three modes: mode -> (microseconds per call, largest loop gap ms)."""
    found: dict[str, tuple[float, float]] = {}
    started = time.perf_counter()
    for _ in range(n):
        task.delay(f"k{next(counter)}", 1)
    found["sync"] = ((time.perf_counter() - started) / n * 1e6, float("nan"))

    async def sequential() -> None:
        for _ in range(n):
            await task.delay_async(f"k{next(counter)}", 1)

    async def gathered() -> None:
        await asyncio.gather(*(task.delay_async(f"k{next(counter)}", 1) for _ in range(n)))

    async def bulk() -> None:
        await task.delay_many_async([(f"k{next(counter)}", 1) for _ in range(n)])

    async def main() -> None:
        await asyncio.gather(*(task.delay_async(f"k{next(counter)}", 1) for _ in range(16)))
        modes = (("async seq", sequential), ("async gather", gathered), ("async many", bulk))
        for mode, work in modes:
            _, elapsed, gap = await ticking(work)
            found[mode] = (elapsed / n * 1e6, gap * 1000)
        # the baseline: the same ticker on a loop that only sleeps (the machine's own noise)
        _, _, idle_gap = await ticking(lambda: asyncio.sleep(0.5))
        found["loop idle"] = (float("nan"), idle_gap * 1000)

    asyncio.run(main())
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() after start-up: the collector's full passes skip the start-up heap",
    )
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as data, _redis(options.redis_url) as url:
        database = f"sqlite:///{data}/bench.sqlite3"
        migrate.upgrade(database)
        app = create_app(load_settings(redis_url=url, database_url=database, data_dir=data))

        @guarded_task(app, name="bench.plain", queue="bench_async")
        def plain(key: str, n: int) -> int:
            return n

        @guarded_task(app, name="bench.idempotent", idempotency_key="{key}", queue="bench_async")
        def idempotent(key: str, n: int) -> int:
            return n

        counter = itertools.count()
        if options.gc_freeze:
            gc.collect()
            gc.freeze()
        print(
            f"n={options.n} runs={options.runs} pool={MAX_WORKERS} threads "
            f"cores={os.cpu_count()} gc_freeze={options.gc_freeze}"
        )
        print(
            f"{'task':<17} {'mode':<13} {'us/call median':>15} {'min-max':>14} {'loop gap ms':>12}"
        )
        for task in (plain, idempotent):
            runs = [measure(task, options.n, counter) for _ in range(options.runs)]
            for mode in runs[0]:
                costs = [run[mode][0] for run in runs]
                gaps = [run[mode][1] for run in runs]
                gap = "-" if mode == "sync" else f"{max(gaps):.1f}"
                cost, spread = "-", "-"
                if mode != "loop idle":
                    cost = f"{statistics.median(costs):.0f}"
                    spread = f"{min(costs):.0f}-{max(costs):.0f}"
                print(f"{task.name:<17} {mode:<13} {cost:>15} {spread:>14} {gap:>12}")
            _clean(url)


def _clean(url: str) -> None:
    """Delete what the bench wrote: its queue and its tasks' idempotency records."""
    client = redis.Redis.from_url(url)
    for key in client.scan_iter("bench_async*"):
        client.delete(key)
    for key in client.scan_iter("sp:idem:*bench.*"):
        client.delete(key)
    client.close()


@contextmanager
def _redis(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    with private_redis() as started:
        yield started


if __name__ == "__main__":
    main()
