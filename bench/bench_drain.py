"""Benchmark draining: how fast N one-INCR jobs drain, bare Celery and the platform side by side.

Run (from /work/main, Redis db 7 is flushed before every run)::

    .venv/bin/python bench/bench_drain.py [--n 3000] [--runs 3] [--json PATH]

Variants (the task body is the same single ``INCR`` of one counter key in every one):

1. ``bare-default``: a plain ``Celery`` app (JSON, no result backend), Celery's defaults,
   one ``celery worker --pool prefork -c 2``;
2. ``bare-prod``: the same with ``task_acks_late`` and ``worker_prefetch_multiplier=1``;
3. ``platform-plain``: ``create_app`` + a plain task, 2 worker processes x ``--pool solo``
   with the lean flags (what ``sandbox-platform worker`` starts on 2 cores);
4. ``platform-guarded``: the same topology, a ``guarded_task`` with ``governor=["bench"]``
   (limit 10**6/s, never denies): mode check, admission Lua, recorder;
5. ``platform-idem``: the guarded task with ``idempotency_key="{i}"``: enqueue-side dedupe
   folded into the publish, claim with the fetch, complete after the run;
6. ``platform-guarded-events``: variant 4 with the flags of ``sandbox-platform worker
   --events`` (``-E``, worker heartbeat on, no gossip, no mingle): what Flower costs;
7. ``dramatiq``: Dramatiq, Redis broker, 2 processes x 4 threads, the same body;
8. ``platform-guarded-split``: variant 4 with the coordination keys in db 8 (the fallback
   path: admission with its own round trip);
9. ``platform-secret``: variant 4 with its one argument declared secret (``secret=["i"]``:
   sealed with AES-GCM at enqueue, opened in the worker; the sandbox key generated into the
   bench's data directory).

Then the I/O-bound phase (``--io-variants``; issue 17): jobs that wait 100 ms, then the same
``INCR``, at 2 x 8 in flight: ``io-platform`` (the guarded task with governor and idempotency
key on 2 x ``--pool threads --concurrency 8``), ``io-bare-threads`` (bare Celery, the same
shape), ``io-dramatiq`` (``-p 2 -t 8``); ``io-platform-solo`` (2 x solo, the default command)
runs only when named. Then the async phase (``--async-variants``): ``async def`` jobs that
``await asyncio.sleep(0.1)``, then the same ``INCR`` on a ``redis.asyncio`` client, at 2 x 50
in flight: ``async-platform`` (the guarded task with governor and idempotency key on 2 x
``--pool threads --concurrency 50``; the platform runs the bodies on one event loop per worker
process), ``async-arq`` (arq's default worker, 2 processes x ``max_jobs=50``),
``async-arq-poll10ms`` (the same with ``poll_delay`` 10 ms instead of arq's 0.5 s: shown
beside the default, no target) and ``async-dramatiq`` (``-p 2 -t 8`` with Dramatiq's AsyncIO
middleware: 16 in flight, N scaled to match). Then (unless ``--no-extras``) an interleaved
enqueue phase, a latency phase, the governor's decision cost and over-admission, and the
target table (bench/README.md).
An async-only invocation::

    .venv/bin/python bench/bench_drain.py --variants '' --io-variants '' --no-extras

Each run: flush db 7 (and db 8); enqueue N jobs with ``apply_async`` in a fresh subprocess
(timed: the enqueue rate); move the queue aside (RENAME); start the workers (own session
each) and wait until every one answers ``control.ping``; move the queue back (RENAME, atomic:
all N are there at once); poll the counter every few ms. The drain rate is jobs/s from the
first consumed job (first non-zero counter) to the last finished one (counter == N). Workers
are SIGKILLed by process group in a ``finally`` block, also on error, Ctrl-C or SIGTERM.

``--platform-log-level WARNING`` runs the platform workers at WARNING instead of the platform's
default INFO (at INFO they log Celery's received/succeeded lines for every job). See
bench/README.md for what each column means and the figures measured here.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import celery  # noqa: E402
import kombu  # noqa: E402
import redis  # noqa: E402
from celery import Celery  # noqa: E402

from bench.drain_common import (  # noqa: E402
    COUNTER_KEY,
    ENV_DB,
    ENV_PREFIX,
    ENV_REDIS,
    IO_SECONDS,
    LATENCY_KEY,
)
from bench.targets import async_rows, io_rows, print_targets, target_rows  # noqa: E402
from sandbox_platform.cli.processes import (  # noqa: E402
    DEFAULT_POOL,
    EVENTS_WORKER_FLAGS,
    POOLS,
)
from sandbox_platform.procs.worker import LEAN_FLAGS  # noqa: E402

DEFAULT_URL = "redis://127.0.0.1:6379/7"
KEY_PREFIX = "spdrain"
STAGING_KEY = "drainbench:staging"
POLL_SECONDS = 0.005
#: jobs/s of the latency phase: far below every variant's drain rate, so no job waits in line
LATENCY_RATE = 200
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Variant:
    name: str
    label: str
    app: str  # celery -A target
    task: str  # attribute of the app module holding the task (enqueue side)
    queue: str
    workers: int
    worker_args: tuple[str, ...]
    #: "celery" (``celery -A app worker``), "dramatiq" (``dramatiq app``) or "arq"
    #: (``arq app``: a WorkerSettings class)
    kind: str = "celery"
    #: the I/O-bound phase: the body waits 100 ms, then the INCR
    io: bool = False
    #: jobs in flight at once (the I/O-bound and async phases' ideal is this x 10 jobs/s)
    in_flight: int = 0

    @property
    def ideal(self) -> float:
        """Jobs/s if every slot ran its 100 ms job back to back (the waiting phases)."""
        return self.in_flight / IO_SECONDS

    @property
    def platform(self) -> bool:
        return self.app.startswith("bench.drain_platform")

    @property
    def guarded(self) -> bool:
        return self.task in (
            "drain_guarded",
            "drain_idem",
            "drain_split",
            "drain_io",
            "drain_async",
        )


BARE_ARGS = ("--pool", "prefork", "--concurrency", "2")
#: the pool of ``sandbox-platform worker`` by default (solo; Celery's default --concurrency,
#: as in every earlier invocation: bench/README.md says what that changes)
DEFAULT_SHAPE = ("--pool", DEFAULT_POOL)
SHAPE = DEFAULT_POOL
PLATFORM_ARGS = (*DEFAULT_SHAPE, *LEAN_FLAGS)
EVENTS_ARGS = (*DEFAULT_SHAPE, *EVENTS_WORKER_FLAGS)  # sandbox-platform worker --events

# the platform app (sandbox mode) publishes to its mode-qualified default queue
PLATFORM_QUEUE = "sandbox_platform.sandbox"

VARIANTS = (
    Variant(
        "bare-default",
        "1 bare Celery defaults, prefork -c2",
        "bench.drain_bare:bare_app",
        "bare_app",
        "celery",
        1,
        BARE_ARGS,
    ),
    Variant(
        "bare-prod",
        "2 bare Celery acks_late+prefetch 1, prefork -c2",
        "bench.drain_bare:bare_prod_app",
        "bare_prod_app",
        "celery",
        1,
        BARE_ARGS,
    ),
    Variant(
        "platform-plain",
        f"3 platform, plain task, 2 x {SHAPE} lean",
        "bench.drain_platform:platform_app",
        "drain_plain",
        PLATFORM_QUEUE,
        2,
        PLATFORM_ARGS,
    ),
    Variant(
        "platform-guarded",
        f"4 platform, guarded (governor), 2 x {SHAPE} lean",
        "bench.drain_platform:platform_app",
        "drain_guarded",
        PLATFORM_QUEUE,
        2,
        PLATFORM_ARGS,
    ),
    Variant(
        "platform-idem",
        f"5 platform, guarded + idempotency key, 2 x {SHAPE} lean",
        "bench.drain_platform:platform_app",
        "drain_idem",
        PLATFORM_QUEUE,
        2,
        PLATFORM_ARGS,
    ),
    Variant(
        "platform-secret",
        f"9 platform, guarded + one secret argument, 2 x {SHAPE} lean",
        "bench.drain_platform:platform_app",
        "drain_secret",
        PLATFORM_QUEUE,
        2,
        PLATFORM_ARGS,
    ),
    Variant(
        "platform-guarded-events",
        f"6 platform, guarded (governor), 2 x {SHAPE} --events",
        "bench.drain_platform:platform_app",
        "drain_guarded",
        PLATFORM_QUEUE,
        2,
        EVENTS_ARGS,
    ),
)
SPLIT = Variant(
    "platform-guarded-split",
    "8 platform, guarded, coordination in another db",
    "bench.drain_platform:platform_split_app",
    "drain_split",
    PLATFORM_QUEUE,
    2,
    PLATFORM_ARGS,
)
DRAMATIQ = Variant(
    "dramatiq",
    "7 Dramatiq, Redis broker, 2 processes x 4 threads",
    "bench.drain_dramatiq",
    "drain_dramatiq",
    "dramatiq:default",
    1,
    ("--processes", "2", "--threads", "4"),
    kind="dramatiq",
)
VARIANTS = (*VARIANTS, DRAMATIQ, SPLIT)

#: the I/O-bound phase: 2 processes x 8 jobs in flight; ``sandbox-platform worker --pool
#: threads`` (README: the pool for jobs that wait on the network) starts these consumers
IO_PROCESSES, IO_THREADS = 2, POOLS["threads"]
IO_ARGS = ("--pool", "threads", "--concurrency", str(IO_THREADS), *LEAN_FLAGS)
IO_VARIANTS = (
    Variant(
        "io-platform",
        f"io: platform guarded + idempotency key, {IO_PROCESSES} x threads -c {IO_THREADS}",
        "bench.drain_platform:platform_app",
        "drain_io",
        PLATFORM_QUEUE,
        IO_PROCESSES,
        IO_ARGS,
        io=True,
        in_flight=IO_PROCESSES * IO_THREADS,
    ),
    Variant(
        "io-bare-threads",
        f"io: bare Celery, {IO_PROCESSES} x threads -c {IO_THREADS}",
        "bench.drain_bare:bare_app",
        "bare_app",
        "celery",
        IO_PROCESSES,
        ("--pool", "threads", "--concurrency", str(IO_THREADS)),
        io=True,
        in_flight=IO_PROCESSES * IO_THREADS,
    ),
    Variant(
        "io-dramatiq",
        f"io: Dramatiq, -p {IO_PROCESSES} -t {IO_THREADS} (its default threads)",
        "bench.drain_dramatiq",
        "drain_io_dramatiq",
        "dramatiq:default",
        1,
        ("--processes", str(IO_PROCESSES), "--threads", str(IO_THREADS)),
        kind="dramatiq",
        io=True,
        in_flight=IO_PROCESSES * IO_THREADS,
    ),
)
#: the I/O-bound job on what ``sandbox-platform worker`` starts by default (2 x solo, the
#: command as documented before issue 17): not in the default phase (``--io-variants``)
IO_SOLO = Variant(
    "io-platform-solo",
    f"io: platform guarded + idempotency key, {IO_PROCESSES} x solo (the default command)",
    "bench.drain_platform:platform_app",
    "drain_io",
    PLATFORM_QUEUE,
    IO_PROCESSES,
    ("--pool", "solo", "--concurrency", "1", *LEAN_FLAGS),
    io=True,
    in_flight=IO_PROCESSES,
)

#: the async phase: 2 processes x 50 jobs in flight, ``async def`` bodies
ASYNC_PROCESSES, ASYNC_SLOTS = 2, 50
ASYNC_IN_FLIGHT = ASYNC_PROCESSES * ASYNC_SLOTS
DRAMATIQ_ASYNC_THREADS = 8  # Dramatiq's default --threads
ASYNC_VARIANTS = (
    Variant(
        "async-platform",
        f"async: platform guarded + idem key, {ASYNC_PROCESSES} x threads -c {ASYNC_SLOTS}",
        "bench.drain_platform:platform_app",
        "drain_async",
        PLATFORM_QUEUE,
        ASYNC_PROCESSES,
        ("--pool", "threads", "--concurrency", str(ASYNC_SLOTS), *LEAN_FLAGS),
        in_flight=ASYNC_IN_FLIGHT,
    ),
    Variant(
        "async-arq",
        f"async: arq default worker, {ASYNC_PROCESSES} x max_jobs {ASYNC_SLOTS}",
        "bench.drain_arq.WorkerSettings",
        "drain_async_arq",
        "arq:queue",  # arq.constants.default_queue_name (a sorted set)
        ASYNC_PROCESSES,
        (),
        kind="arq",
        in_flight=ASYNC_IN_FLIGHT,
    ),
    Variant(
        "async-arq-poll10ms",
        f"async: arq poll_delay 10 ms (not default), {ASYNC_PROCESSES} x max_jobs {ASYNC_SLOTS}",
        "bench.drain_arq.FastPollSettings",
        "drain_async_arq",
        "arq:queue",
        ASYNC_PROCESSES,
        (),
        kind="arq",
        in_flight=ASYNC_IN_FLIGHT,
    ),
    Variant(
        "async-dramatiq",
        f"async: Dramatiq AsyncIO, -p {ASYNC_PROCESSES} -t {DRAMATIQ_ASYNC_THREADS}",
        "bench.drain_dramatiq:async_broker",
        "drain_async_dramatiq",
        "dramatiq:default",
        1,
        ("--processes", str(ASYNC_PROCESSES), "--threads", str(DRAMATIQ_ASYNC_THREADS)),
        kind="dramatiq",
        in_flight=ASYNC_PROCESSES * DRAMATIQ_ASYNC_THREADS,
    ),
)
BY_NAME = {v.name: v for v in (*VARIANTS, *IO_VARIANTS, IO_SOLO, *ASYNC_VARIANTS)}
#: the peer each waiting phase's table compares with, at the same jobs in flight
PHASE_PEERS = {"io": "io-dramatiq", "async": "async-arq"}


def async_n(n: int, variant: Variant) -> int:
    """Jobs per run of an async variant: ``--async-n`` is for 2 x 50 in flight; a variant with
    fewer in flight (Dramatiq's 16) runs as many jobs per slot, so as long at its ideal."""
    return max(1, n * variant.in_flight // ASYNC_IN_FLIGHT)


@dataclass
class RunResult:
    variant: str
    run: int
    n: int
    enqueue_seconds: float
    enqueue_rate: float
    startup_seconds: float
    first_lag_seconds: float
    drain_seconds: float
    drain_rate: float
    worker_cpu_seconds: float
    worker_cpu_us_per_job: float
    busiest_process_cpu_share: float
    loadavg_1m_before: float
    redis_cpu_us_per_job: float
    other_cpu_share: float
    irq_cpu_share: float
    governor_admitted: int | None
    #: Redis commands per job during the drain (INFO commandstats, the bench's own polls out)
    redis_calls_per_job: float = 0.0
    redis_calls_by_command: dict[str, float] = field(default_factory=dict)
    #: idempotency variant: Redis memory of the keys one job leaves (MEMORY USAGE) and count
    idem_bytes_per_job: float | None = None
    idem_keys_per_job: float | None = None
    per_process_cpu_seconds: dict[str, float] = field(default_factory=dict)


def command_calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def calls_per_job(
    before: dict[str, int], after: dict[str, int], polls: int, n: int
) -> tuple[float, dict[str, float]]:
    """Commands per job between two commandstats, the bench's own GET polls and INFO out."""
    delta = {name: after[name] - before.get(name, 0) for name in after}
    delta["get"] = delta.get("get", 0) - polls
    delta["info"] = delta.get("info", 0) - 1
    by_command = {name: round(c / n, 2) for name, c in sorted(delta.items()) if c > 0}
    return sum(c for c in delta.values() if c > 0) / n, by_command


IDEM_PATTERNS = (f"{KEY_PREFIX}:idem:*", f"{KEY_PREFIX}:enq:*")


def idempotency_memory(client: redis.Redis, n: int) -> tuple[float, float]:
    """(bytes, keys) per job of what the idempotency path leaves in Redis (MEMORY USAGE)."""
    keys = [k for pattern in IDEM_PATTERNS for k in client.scan_iter(match=pattern, count=1000)]
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    total = sum(int(size or 0) for size in pipe.execute())
    return total / n, len(keys) / n


# -- the enqueue side (runs in a fresh subprocess, so no app's signals leak into another) ----


def _enqueue_task(variant: Variant, name: str = "drain.incr") -> Any:
    if variant.platform:
        import bench.drain_platform as module

        return getattr(module, "drain_latency" if name == "drain.latency" else variant.task)
    import bench.drain_bare as bare

    return getattr(bare, variant.task).tasks["drain.io" if variant.io else name]


def enqueue_only(variant: Variant, n: int, mode: str, start: int = 0) -> float:
    """Publish n jobs (``mode``: one ``apply_async`` each, ``bulk`` in one ``delay_many``, or
    ``latency`` jobs paced at LATENCY_RATE/s); the elapsed seconds."""
    if variant.kind == "arq":
        import bench.drain_arq as arq_peer

        return arq_peer.enqueue(n, start)
    if variant.kind == "dramatiq":
        import bench.drain_dramatiq as peer

        actor = getattr(peer, variant.task)
        started = time.perf_counter()
        for i in range(start, start + n):
            actor.send(i)
        return time.perf_counter() - started
    task = _enqueue_task(variant, "drain.latency" if mode == "latency" else "drain.incr")
    started = time.perf_counter()
    if mode == "bulk":
        task.delay_many([(i,) for i in range(start, start + n)])
    elif mode == "latency":
        for i in range(n):
            pause = started + i / LATENCY_RATE - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            task.apply_async((time.time(),))
    else:
        for i in range(start, start + n):
            task.apply_async((i,))
    return time.perf_counter() - started


def enqueue_server(variant: Variant, mode: str) -> None:
    """Serve enqueue chunks: each line "N" on stdin publishes N more jobs; prints seconds."""
    done = 0
    for line in sys.stdin:
        n = int(line)
        print(json.dumps({"seconds": enqueue_only(variant, n, mode, start=done)}), flush=True)
        done += n


def run_enqueue(variant: Variant, n: int, env: dict[str, str], mode: str = "single") -> float:
    proc = subprocess.run(
        [sys.executable, __file__, "--enqueue-only", variant.name, "--n", str(n), "--mode", mode],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"enqueue of {variant.name} failed: {proc.stderr[-2000:]}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["seconds"])


# -- worker processes ----------------------------------------------------------------------


class Worker:
    """One ``celery worker`` in its own session; killed by process group."""

    def __init__(self, variant: Variant, index: int, env: dict[str, str], log_dir: Path) -> None:
        self.hostname = f"drain{index}-{os.getpid()}-{time.monotonic_ns()}@localhost"
        self.kind = variant.kind
        self.command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            variant.app,
            "worker",
            *variant.worker_args,
            "-n",
            self.hostname,
        ]
        if variant.kind in READY_LINES:  # dramatiq, arq: ``<kind> app args``
            self.command = [sys.executable, "-m", variant.kind, variant.app, *variant.worker_args]
        self.env = env
        self.log_path = log_dir / f"{variant.name}-{index}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_offset = 0

    def start(self) -> None:
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def new_log(self) -> str:
        """What this worker logged since it was started."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(self.log_offset)
            return log.read().decode(errors="replace")

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"worker {self.hostname} exited {self.process.returncode}:\n{tail}")

    def kill(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)


def group_cpu(pgids: set[int]) -> dict[int, float]:
    """CPU seconds (user + system) of every live process whose process group is in pgids."""
    out: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()
        if int(fields[2]) in pgids:
            out[int(entry)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def pid_cpu(pid: int) -> float:
    """CPU seconds (user + system) of one process, 0.0 if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy() -> tuple[float, float]:
    """CPU seconds all cores spent since boot in processes (user, nice, system) and in
    interrupts (irq, softirq: loopback network traffic is mostly here), from ``/proc/stat``."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values[0:3]) / CLK_TCK, sum(values[5:7]) / CLK_TCK


#: what a peer's worker process logs once it consumes: Dramatiq one line per process, arq its
#: Redis info line, just before its first poll
READY_LINES = {"dramatiq": "ready for action", "arq": "redis_version="}


def wait_ready(workers: list[Worker], control_app: Any, timeout: float = 90.0) -> None:
    if workers and workers[0].kind in READY_LINES:
        wait_logged_ready(workers, timeout)
        return
    pending = {w.hostname for w in workers}
    deadline = time.monotonic() + timeout
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"workers not answering ping within {timeout}s: {sorted(pending)}")
        for worker in workers:
            worker.check_alive()
        replies = control_app.control.ping(destination=sorted(pending), timeout=0.5) or []
        for reply in replies:
            pending -= set(reply)


def wait_logged_ready(workers: list[Worker], timeout: float) -> None:
    """Each ``dramatiq`` command logs one "ready for action" line per worker process it forks;
    each ``arq`` command (one process) its Redis info line."""
    kind = workers[0].kind
    command = workers[0].command
    processes = int(command[command.index("--processes") + 1]) if "--processes" in command else 1
    deadline = time.monotonic() + timeout
    while True:
        for worker in workers:
            worker.check_alive()
        ready = sum(w.new_log().count(READY_LINES[kind]) for w in workers)
        if ready >= processes * len(workers):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{kind} workers not ready within {timeout}s")
        time.sleep(0.1)


# -- one run ---------------------------------------------------------------------------------


def coordination(client: redis.Redis, variant: Variant) -> redis.Redis:
    """The Redis holding ``variant``'s coordination keys: the broker's, or for the split
    variant the next database (flushed with the broker's)."""
    if variant is not SPLIT:
        return client
    kwargs = client.connection_pool.connection_kwargs
    return redis.Redis(host=kwargs["host"], port=kwargs["port"], db=int(kwargs["db"]) + 1)


def fresh_database(client: redis.Redis, variant: Variant) -> None:
    """FLUSHDB; for the platform, the bench resource's limit (10**6/s: it never denies)."""
    client.flushdb()
    coordination(client, SPLIT).flushdb()
    if variant.platform:
        from sandbox_platform.coordination.governor import Governor

        Governor(coordination(client, variant), KEY_PREFIX).set_limit("bench", 10**6, 1)


def start_workers(workers: list[Worker], redis_url: str) -> float:
    """Start ``workers`` and wait until every one is ready; the seconds it took."""
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    # a fresh control app per run: kombu caches declared queues per connection, and
    # the database was just flushed
    control_app = Celery("drain_control", broker=redis_url, set_as_current=False)
    try:
        wait_ready(workers, control_app)
    finally:
        control_app.close()
    startup = time.perf_counter() - started
    time.sleep(0.5)  # let the consumers settle into their blocking pop
    return startup


def latency_run(
    variant: Variant, n: int, client: redis.Redis, env: dict[str, str], log_dir: Path, url: str
) -> list[float]:
    """Enqueue -> start latency of n jobs sent at LATENCY_RATE/s to idle, ready workers (ms)."""
    fresh_database(client, variant)
    workers = [Worker(variant, i, env, log_dir) for i in range(variant.workers)]
    try:
        start_workers(workers, url)
        run_enqueue(variant, n, env, mode="latency")
        deadline = time.monotonic() + 60
        while client.llen(LATENCY_KEY) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{variant.name}: latency jobs not done")
            time.sleep(POLL_SECONDS)
    finally:
        for worker in workers:
            worker.kill()
    return sorted(float(v) * 1000 for v in client.lrange(LATENCY_KEY, 0, -1))


def one_run(
    variant: Variant,
    run: int,
    n: int,
    client: redis.Redis,
    env: dict[str, str],
    log_dir: Path,
    redis_url: str,
) -> RunResult:
    redis_pid = int(client.info("server").get("process_id") or 0)
    load_before = os.getloadavg()[0]
    fresh_database(client, variant)
    enqueue_seconds = run_enqueue(variant, n, env)
    queued = client.zcard(variant.queue) if variant.kind == "arq" else client.llen(variant.queue)
    if queued != n:
        raise RuntimeError(f"{variant.name}: {queued} messages in {variant.queue!r}, not {n}")
    client.rename(variant.queue, STAGING_KEY)
    workers = [Worker(variant, i, env, log_dir) for i in range(variant.workers)]
    try:
        startup = start_workers(workers, redis_url)
        pgids = {w.process.pid for w in workers if w.process is not None}
        cpu_before = group_cpu(pgids)
        redis_before, busy_before = pid_cpu(redis_pid), machine_busy()
        calls_before = command_calls(client)
        released = time.perf_counter()
        client.rename(STAGING_KEY, variant.queue)
        first_at, first_count, polls = 0.0, 0, 0
        deadline = released + max(120.0, n / 20)
        while True:
            count = int(client.get(COUNTER_KEY) or 0)
            polls += 1
            now = time.perf_counter()
            if count and not first_at:
                first_at, first_count = now, count
            if count >= n:
                break
            if now > deadline:
                raise TimeoutError(f"{variant.name}: only {count}/{n} done after {now - released}s")
            if int(now - released) % 5 == 0:
                for worker in workers:
                    worker.check_alive()
            time.sleep(POLL_SECONDS)
        done_at = time.perf_counter()
        calls, by_command = calls_per_job(calls_before, command_calls(client), polls, n)
        cpu_after = group_cpu(pgids)
        redis_after, busy_after = pid_cpu(redis_pid), machine_busy()
        admitted: int | None = None
        if variant.guarded:
            from sandbox_platform.coordination.governor import Governor

            counts = Governor(coordination(client, variant), KEY_PREFIX).stats()
            admitted = int(counts.get("bench", {}).get("admitted", 0))
            if admitted < n:  # every job must have passed the governor
                raise RuntimeError(f"{variant.name}: governor admitted {admitted} of {n} jobs")
        idem_bytes = idem_keys = None
        if variant.task == "drain_idem":
            idem_bytes, idem_keys = idempotency_memory(client, n)
    finally:
        for worker in workers:
            worker.kill()
    drain = done_at - first_at
    per_process = {
        str(pid): round(cpu_after[pid] - cpu_before.get(pid, 0.0), 3) for pid in cpu_after
    }
    cpu_total = sum(per_process.values())
    redis_cpu = redis_after - redis_before
    window = done_at - released
    # what the rest of the machine (other processes, this bench's poller) used, in cores
    other = max(0.0, (busy_after[0] - busy_before[0]) - cpu_total - redis_cpu) / window
    irq = (busy_after[1] - busy_before[1]) / window
    return RunResult(
        variant=variant.name,
        run=run,
        n=n,
        enqueue_seconds=enqueue_seconds,
        enqueue_rate=n / enqueue_seconds,
        startup_seconds=startup,
        first_lag_seconds=first_at - released,
        drain_seconds=drain,
        drain_rate=(n - first_count) / drain if drain > 0 else float("inf"),
        worker_cpu_seconds=cpu_total,
        worker_cpu_us_per_job=cpu_total / n * 1e6,
        busiest_process_cpu_share=max(per_process.values(), default=0.0) / (done_at - released),
        loadavg_1m_before=load_before,
        redis_cpu_us_per_job=redis_cpu / n * 1e6,
        other_cpu_share=other,
        irq_cpu_share=irq,
        governor_admitted=admitted,
        redis_calls_per_job=calls,
        redis_calls_by_command=by_command,
        idem_bytes_per_job=idem_bytes,
        idem_keys_per_job=idem_keys,
        per_process_cpu_seconds=per_process,
    )


# -- report ---------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    return f"{value:,.0f}"


def summarize(results: list[RunResult], names: list[str]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for name in names:
        mine = [r for r in results if r.variant == name]
        if not mine:
            continue
        drain = [r.drain_rate for r in mine]
        enq = [r.enqueue_rate for r in mine]
        summary[name] = {
            "runs": len(mine),
            "n": mine[0].n,
            "drain_median": statistics.median(drain),
            "drain_min": min(drain),
            "drain_max": max(drain),
            "enqueue_median": statistics.median(enq),
            "enqueue_min": min(enq),
            "enqueue_max": max(enq),
            "cpu_us_per_job_median": statistics.median(r.worker_cpu_us_per_job for r in mine),
            "busiest_share_median": statistics.median(r.busiest_process_cpu_share for r in mine),
            "startup_median": statistics.median(r.startup_seconds for r in mine),
            "redis_cpu_us_per_job_median": statistics.median(r.redis_cpu_us_per_job for r in mine),
            "redis_calls_per_job_median": statistics.median(r.redis_calls_per_job for r in mine),
            "other_cpu_max": max(r.other_cpu_share for r in mine),
            "irq_cpu_median": statistics.median(r.irq_cpu_share for r in mine),
        }
        if BY_NAME[name].in_flight:
            summary[name]["ideal"] = BY_NAME[name].ideal
            summary[name]["of_ideal"] = statistics.median(drain) / BY_NAME[name].ideal
    return summary


def print_report(summary: dict[str, dict[str, Any]], header: dict[str, Any]) -> None:
    print()
    print(
        f"date {header['date']}  nproc {header['nproc']}  Python {header['python']}  "
        f"Celery {header['celery']}  kombu {header['kombu']}  redis-py {header['redis_py']} "
        f"(hiredis {header['hiredis']})  Redis server {header['redis_server']}"
    )
    print(
        f"N={header['n']} jobs per run, {header['runs']} runs per variant, {header['url']}, "
        f"platform log level {header['platform_log_level']}"
    )
    base1 = summary.get("bare-default", {}).get("drain_median")
    base2 = summary.get("bare-prod", {}).get("drain_median")
    print()
    head = (
        f"{'variant':<54} {'drain jobs/s':>12} {'min-max':>13} {'vs 1':>6} {'vs 2':>6}"
        f" {'worker CPU':>10} {'busiest':>7} {'redis CPU':>9} {'calls':>5} {'other':>5}"
    )
    print(head)
    print("-" * len(head))
    for name, s in summary.items():
        v1 = f"{s['drain_median'] / base1:.2f}" if base1 else "-"
        v2 = f"{s['drain_median'] / base2:.2f}" if base2 else "-"
        span = f"{_fmt(s['drain_min'])}-{_fmt(s['drain_max'])}"
        print(
            f"{BY_NAME[name].label:<54} {_fmt(s['drain_median']):>12} {span:>13} {v1:>6} {v2:>6}"
            f" {s['cpu_us_per_job_median']:>10,.0f} {s['busiest_share_median']:>7.0%}"
            f" {s['redis_cpu_us_per_job_median']:>9,.0f} {s['redis_calls_per_job_median']:>5.1f}"
            f" {s['other_cpu_max']:>5.2f}"
        )
    print()
    ebase = summary.get("bare-default", {}).get("enqueue_median")
    head = f"{'enqueue (apply_async, 1 producer)':<54} {'jobs/s':>12} {'min-max':>13} {'vs 1':>6}"
    print(head)
    print("-" * len(head))
    for name, s in summary.items():
        span = f"{_fmt(s['enqueue_min'])}-{_fmt(s['enqueue_max'])}"
        ratio = f"{s['enqueue_median'] / ebase:.2f}" if ebase else "-"
        print(f"{BY_NAME[name].label:<54} {_fmt(s['enqueue_median']):>12} {span:>13} {ratio:>6}")
    print()
    print(
        "drain = jobs/s from the first consumed job to the last finished (median of runs).\n"
        "worker CPU = all worker processes' CPU during the drain / N, in us per job (median); "
        "busiest = the busiest worker process's CPU / drain wall time (median);\n"
        "redis CPU = redis-server's CPU during the drain / N, in us per job (median); "
        "calls = Redis commands per job during the drain (INFO commandstats; median); "
        "other = cores used by everything else during the drain (other processes, this "
        "bench's poller), max over runs: above ~0.2 the machine was not idle; "
        "irq/softirq time (loopback traffic) is in neither and is in the --json output."
    )


def events_cost(results: list[RunResult]) -> dict[str, Any] | None:
    """Events on / off for the guarded task: the ratio of medians and of each run's pair."""
    on = {r.run: r for r in results if r.variant == "platform-guarded-events"}
    off = {r.run: r for r in results if r.variant == "platform-guarded"}
    pairs = [(on[run], off[run]) for run in sorted(on.keys() & off.keys())]
    if not pairs:
        return None
    median = statistics.median
    return {
        "drain_ratio": median(a.drain_rate for a, _ in pairs)
        / median(b.drain_rate for _, b in pairs),
        "drain_ratio_per_run": [round(a.drain_rate / b.drain_rate, 3) for a, b in pairs],
        "worker_cpu_us_per_job_added": median(a.worker_cpu_us_per_job for a, _ in pairs)
        - median(b.worker_cpu_us_per_job for _, b in pairs),
        "redis_cpu_us_per_job_added": median(a.redis_cpu_us_per_job for a, _ in pairs)
        - median(b.redis_cpu_us_per_job for _, b in pairs),
    }


def print_events_cost(cost: dict[str, Any] | None) -> None:
    """One line: what ``sandbox-platform worker --events`` costs the guarded drain."""
    if not cost:
        return
    print()
    per_run = ", ".join(f"{r:.2f}" for r in cost["drain_ratio_per_run"])
    print(
        f"events on / off (variant 6 / variant 4, guarded): drain {cost['drain_ratio']:.2f}"
        f" (per run {per_run}); worker CPU {cost['worker_cpu_us_per_job_added']:+,.0f} us/job,"
        f" redis CPU {cost['redis_cpu_us_per_job_added']:+,.0f} us/job (no event consumer"
        " attached)"
    )


# -- the phases besides the drain: enqueue, latency, governor -------------------------

LATENCY_VARIANTS = ("bare-default", "platform-guarded")


def extra_phases(
    names: list[str],
    run: int,
    args: argparse.Namespace,
    client: redis.Redis,
    env: dict[str, str],
    log_dir: Path,
    extras: dict[str, Any],
) -> None:
    """Run ``run`` of the latency phase (for the variants selected)."""
    for name in (n for n in LATENCY_VARIANTS if n in names):
        ms = latency_run(BY_NAME[name], args.latency_n, client, env, log_dir, args.redis_url)
        row = latency_summary(ms)
        extras["latency"].setdefault(name, []).append(row)
        print(
            f"run {run} {name:<17} latency enqueue->start p50 {row['p50']:.2f} ms  "
            f"p99 {row['p99']:.2f} ms  max {row['max']:.2f} ms",
            flush=True,
        )


def latency_summary(ms: list[float]) -> dict[str, float]:
    """p50, p99 and max of sorted latencies in ms."""
    return {
        "p50": ms[len(ms) // 2],
        "p99": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
        "max": ms[-1],
    }


#: the enqueue kinds of the enqueue phase: (variant, mode)
ENQUEUE_KINDS = (
    ("bare-default", "single"),
    ("platform-guarded", "single"),
    ("platform-idem", "single"),
    ("platform-secret", "single"),
    ("platform-guarded", "bulk"),
    ("dramatiq", "single"),
)
ENQUEUE_CHUNK = 500


class EnqueueServer:
    """One ``--enqueue-server`` subprocess: an app that publishes chunks on demand."""

    def __init__(self, name: str, mode: str, env: dict[str, str]) -> None:
        self.label = f"{name} {mode}"
        command = [sys.executable, __file__, "--enqueue-server", name, "--mode", mode]
        self.process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def chunk(self, n: int) -> float:
        """Publish n jobs; the seconds it took."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{n}\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"enqueue server {self.label} died")
        return float(json.loads(line)["seconds"])

    def close(self) -> None:
        self.process.kill()
        self.process.wait(10)


def enqueue_phase(
    names: list[str], rounds: int, client: redis.Redis, env: dict[str, str]
) -> dict[str, list[float]]:
    """Jobs/s of each enqueue kind, in ENQUEUE_CHUNK chunks interleaved kind by kind
    (round r of every kind, then round r+1): one long-lived publisher per kind, so start-up
    is not measured and drift hits every kind alike."""
    kinds = [(name, mode) for name, mode in ENQUEUE_KINDS if name in names]
    fresh_database(client, BY_NAME["platform-guarded"])
    servers = [EnqueueServer(name, mode, env) for name, mode in kinds]
    rates: dict[str, list[float]] = {server.label: [] for server in servers}
    try:
        for server in servers:  # warm up: connections, scripts, declarations
            server.chunk(50)
        for _ in range(rounds):
            for server in servers:
                rates[server.label].append(ENQUEUE_CHUNK / server.chunk(ENQUEUE_CHUNK))
            fresh_database(client, BY_NAME["platform-guarded"])
    finally:
        for server in servers:
            server.close()
        client.flushdb()
    for label, values in rates.items():
        print(
            f"enqueue {label:<26} {statistics.median(values):8,.0f} jobs/s "
            f"({_fmt(min(values))}-{_fmt(max(values))}, {len(values)} chunks of {ENQUEUE_CHUNK})",
            flush=True,
        )
    return rates


def governor_phase(url: str, runs: int) -> dict[str, Any]:
    """bench_governor's decision rates (ours vs raw EVALSHA, ``runs`` times: one measurement
    swings by a few percent on a VM) and 8-process over-admission."""
    from bench.bench_governor import cleanup, decision_rates, over_admission

    prefix = f"govbench{os.getpid()}"
    try:
        rates = [decision_rates(url, prefix) for _ in range(runs)]
        bound = over_admission(url, prefix)
    finally:
        cleanup(url, prefix)
    for ours, raw in rates:
        print(
            f"governor decisions/s one connection: ours {ours:,.0f}, raw EVALSHA {raw:,.0f} "
            f"({ours / raw:.2f})",
            flush=True,
        )
    print(
        f"governor: {bound['processes']} processes on one bucket: admitted {bound['admitted']} "
        f"of bound {bound['bound']}",
        flush=True,
    )
    return {"rates": rates, "bound": bound}


def print_run(result: RunResult) -> None:
    print(
        f"run {result.run} {result.variant:<17} drain {result.drain_rate:8,.0f} jobs/s "
        f"({result.drain_seconds:.2f}s)  enqueue {result.enqueue_rate:7,.0f} "
        f"jobs/s  start {result.startup_seconds:.1f}s  first after "
        f"{result.first_lag_seconds * 1000:.0f} ms  "
        f"CPU {result.worker_cpu_us_per_job:,.0f} us/job  "
        f"redis {result.redis_cpu_us_per_job:,.0f} us/job  "
        f"other {result.other_cpu_share:.2f} cores  "
        f"irq {result.irq_cpu_share:.2f}  "
        f"load {result.loadavg_1m_before:.1f}",
        flush=True,
    )


def wait_phase(
    names: list[str],
    runs: int,
    jobs: Callable[[Variant], int],
    args: argparse.Namespace,
    client: redis.Redis,
    env: dict[str, str],
    log_dir: Path,
) -> list[RunResult]:
    """A phase of jobs that wait 100 ms (the I/O-bound one, the async one): ``jobs(variant)``
    jobs per run, ``runs`` runs interleaved run by run like the drain."""
    results: list[RunResult] = []
    for run in range(1, runs + 1):
        for name in names:
            variant = BY_NAME[name]
            result = one_run(variant, run, jobs(variant), client, env, log_dir, args.redis_url)
            print_run(result)
            print(
                f"      {name}: {result.drain_rate / variant.ideal:.2f} of its ideal "
                f"{variant.ideal:,.0f} jobs/s ({variant.in_flight} in flight)"
            )
            results.append(result)
    return results


def print_wait_table(phase: str, summary: dict[str, dict[str, Any]], names: list[str]) -> None:
    """One waiting phase's rows: drain median and min-max, the ideal (in flight / 0.1 s), the
    fraction of it, and the ratio to the phase's peer at the same jobs in flight."""
    rows = [name for name in names if name in summary]
    if not rows:
        return
    peer = PHASE_PEERS[phase]
    base = summary.get(peer, {}).get("drain_median")
    print()
    head = (
        f"{phase + ' phase (100 ms jobs)':<54} {'N':>6} {'jobs/s':>8} {'min-max':>13}"
        f" {'ideal':>7} {'of ideal':>8} {'/ ' + peer:>16}"
    )
    print(head)
    print("-" * len(head))
    for name in rows:
        s = summary[name]
        same = base and BY_NAME[name].in_flight == BY_NAME[peer].in_flight
        ratio = f"{s['drain_median'] / base:.2f}" if same else "-"
        span = f"{_fmt(s['drain_min'])}-{_fmt(s['drain_max'])}"
        print(
            f"{BY_NAME[name].label:<54} {s['n']:>6} {_fmt(s['drain_median']):>8} {span:>13}"
            f" {_fmt(s['ideal']):>7} {s['of_ideal']:>8.2f} {ratio:>16}"
        )
    print(
        f"ideal = jobs in flight / {IO_SECONDS} s; jobs/s median of {summary[rows[0]]['runs']} "
        f"runs; / {peer}: ratio of medians, at the same jobs in flight only."
    )


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="jobs per run (default 3000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per variant (default 3)")
    parser.add_argument("--redis-url", default=os.environ.get("SP_BENCH_DRAIN_URL", DEFAULT_URL))
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument(
        "--variants",
        default=",".join(v.name for v in VARIANTS),
        help="comma-separated subset of: " + ", ".join(v.name for v in VARIANTS),
    )
    parser.add_argument(
        "--io-variants",
        default=",".join(v.name for v in IO_VARIANTS),
        help="the I/O-bound phase's variants ('' skips the phase): "
        + ", ".join(v.name for v in IO_VARIANTS),
    )
    parser.add_argument(
        "--io-n",
        type=int,
        default=100 * IO_PROCESSES * IO_THREADS,
        help="jobs per I/O-bound run (default 100 x the jobs in flight)",
    )
    parser.add_argument(
        "--io-runs", type=int, default=5, help="runs per I/O-bound variant (default 5)"
    )
    parser.add_argument(
        "--async-variants",
        default=",".join(v.name for v in ASYNC_VARIANTS),
        help="the async phase's variants ('' skips the phase): "
        + ", ".join(v.name for v in ASYNC_VARIANTS),
    )
    parser.add_argument(
        "--async-n",
        type=int,
        default=100 * ASYNC_IN_FLIGHT,
        help=f"jobs per async run at {ASYNC_IN_FLIGHT} in flight (default 100 x that); "
        "async-dramatiq (16 in flight) runs as many per slot",
    )
    parser.add_argument(
        "--async-runs", type=int, default=5, help="runs per async variant (default 5)"
    )
    parser.add_argument(
        "--log-dir", type=Path, help="keep the worker logs here (default: a temp dir)"
    )
    parser.add_argument(
        "--platform-log-level",
        help="SANDBOX_PLATFORM_LOG_LEVEL for the platform workers (default: unset, i.e. the "
        "platform's default INFO, which logs Celery's received/succeeded lines per job)",
    )
    parser.add_argument(
        "--latency-n", type=int, default=1000, help="jobs per latency run (default 1000)"
    )
    parser.add_argument(
        "--no-extras",
        action="store_true",
        help="drain and enqueue only: no bulk enqueue, latency, governor or target rows",
    )
    parser.add_argument("--enqueue-only", help=argparse.SUPPRESS)
    parser.add_argument("--enqueue-server", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="single", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.enqueue_only:
        seconds = enqueue_only(BY_NAME[args.enqueue_only], args.n, args.mode)
        print(json.dumps({"seconds": seconds}))
        return
    if args.enqueue_server:
        enqueue_server(BY_NAME[args.enqueue_server], args.mode)
        return

    # SIGTERM/SIGHUP unwind like Ctrl-C, so the finally blocks kill the workers
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupt)
    names = [name.strip() for name in args.variants.split(",") if name.strip()]
    io_names = [name.strip() for name in args.io_variants.split(",") if name.strip()]
    async_names = [name.strip() for name in args.async_variants.split(",") if name.strip()]
    unknown = [name for name in (*names, *io_names, *async_names) if name not in BY_NAME]
    if unknown:
        parser.error(f"unknown variant(s): {unknown}")
    if not args.redis_url.rstrip("/").endswith("/7"):
        parser.error("this bench flushes its database: use Redis db 7 (…/7)")

    from sandbox_platform.db.migrate import upgrade

    client = redis.Redis.from_url(args.redis_url)
    started = time.monotonic()
    header = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "redis_py": redis.__version__,
        "hiredis": redis.utils.HIREDIS_AVAILABLE,
        "redis_server": client.info("server").get("redis_version"),
        "n": args.n,
        "runs": args.runs,
        "io_n": args.io_n,
        "io_runs": args.io_runs,
        "async_n": args.async_n,
        "async_runs": args.async_runs,
        "url": args.redis_url,
        "platform_log_level": args.platform_log_level or "INFO (platform default)",
    }
    if "async-arq" in async_names:
        import arq.version

        from bench.drain_arq import settings as arq_settings

        header["arq"] = arq.version.VERSION
        header["arq_settings"] = arq_settings()
    results: list[RunResult] = []
    extras: dict[str, Any] = {"latency": {}, "enqueue": {}, "governor": None}
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        tmpdir = Path(tmp)
        db_url = f"sqlite:///{tmpdir / 'sandbox.sqlite3'}"
        upgrade(db_url)
        log_dir = args.log_dir or tmpdir
        log_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_PLATFORM_")}
        env.update(
            {
                ENV_REDIS: args.redis_url,
                ENV_DB: db_url,
                ENV_PREFIX: KEY_PREFIX,
                "PYTHONPATH": str(ROOT),
                "XDG_DATA_HOME": str(tmpdir / "xdg"),
            }
        )
        if args.platform_log_level:
            env["SANDBOX_PLATFORM_LOG_LEVEL"] = args.platform_log_level
        try:
            # interleave: run r of every variant, then run r+1, so drift hits all alike
            for run in range(1, args.runs + 1):
                for name in names:
                    result = one_run(
                        BY_NAME[name], run, args.n, client, env, log_dir, args.redis_url
                    )
                    results.append(result)
                    print_run(result)
                if not args.no_extras:
                    extra_phases(names, run, args, client, env, log_dir, extras)
            results += wait_phase(
                io_names, args.io_runs, lambda _: args.io_n, args, client, env, log_dir
            )
            results += wait_phase(
                async_names,
                args.async_runs,
                lambda variant: async_n(args.async_n, variant),
                args,
                client,
                env,
                log_dir,
            )
            if not args.no_extras:
                extras["enqueue"] = enqueue_phase(names, args.runs * 4, client, env)
                extras["governor"] = governor_phase(args.redis_url, args.runs)
        finally:
            client.flushdb()
            coordination(client, SPLIT).flushdb()
    header["loadavg_at_end"] = os.getloadavg()
    header["total_seconds"] = round(time.monotonic() - started, 1)
    summary = summarize(results, [*names, *io_names, *async_names])
    cost = events_cost(results)
    print_report(summary, header)
    print_events_cost(cost)
    print_wait_table("io", summary, io_names)
    print_wait_table("async", summary, async_names)
    if "arq" in header:
        print(f"arq {header['arq']} worker settings: {header['arq_settings']}")
    io_in_flight = IO_PROCESSES * IO_THREADS
    if not args.no_extras:
        print_targets(target_rows(results, extras, io_in_flight, ASYNC_IN_FLIGHT))
    elif io_names or async_names:
        rows = io_rows(results, io_in_flight) if io_names else []
        rows += async_rows(results, ASYNC_IN_FLIGHT) if async_names else []
        print_targets(rows)
    print(f"total {header['total_seconds']}s, load average at start {header['loadavg_at_start']}")
    if args.json:
        payload = {
            "header": header,
            "summary": summary,
            "events_cost": cost,
            "extras": extras,
            "runs": [vars(r) for r in results],
        }
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
