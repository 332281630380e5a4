"""``worker``, ``beat`` and ``demo``: the processes the platform runs, supervised."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from types import MappingProxyType
from typing import Annotated

import typer

from sandbox_platform.cli.common import AppOption, app_module, celery_env, cli_settings, load_app
from sandbox_platform.core.settings import Settings
from sandbox_platform.procs.cpu_quota import default_processes
from sandbox_platform.procs.deadlines import DeadlineWatch
from sandbox_platform.procs.supervisor import Supervisor

__all__ = [
    "DEFAULT_POOL",
    "EVENTS_WORKER_FLAGS",
    "POOLS",
    "WORKER_FLAGS",
    "beat",
    "demo",
    "worker",
]

#: the lean consumer: no gossip, no mingle, no worker heartbeat, no task events
WORKER_FLAGS = ("--without-gossip", "--without-mingle", "--without-heartbeat")
#: ``--events``: task events on and the worker heartbeat kept, so Flower sees every job
EVENTS_WORKER_FLAGS = ("-E", "--without-gossip", "--without-mingle")
EXTRA_ARGS = MappingProxyType({"allow_extra_args": True, "ignore_unknown_options": True})


#: the pools ``worker --pool`` takes, and each one's default jobs in flight per process
POOLS = MappingProxyType({"threads": 8, "solo": 1, "prefork": 1})
#: solo by default: measured (bench/README.md, issue 17), the threads pool costs about twice the
#: CPU per job on jobs that do not wait; jobs that wait on the network want ``--pool threads``
DEFAULT_POOL = "solo"


def worker(
    ctx: typer.Context,
    processes: Annotated[
        int | None,
        typer.Option(
            help="consumer processes (default: the container's CPU limit, else one per core)"
        ),
    ] = None,
    pool: Annotated[
        str,
        typer.Option(
            help="solo (the default: one job at a time per process, the least CPU per job), "
            "threads (--concurrency jobs in flight per process: for jobs that wait on the "
            "network), or prefork (a child process per job slot)"
        ),
    ] = DEFAULT_POOL,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            "-c",
            help="jobs in flight per process (threads: default 8; solo: always 1; prefork: "
            "child processes, default 1)",
        ),
    ] = None,
    app_option: AppOption = None,
    skip_readiness: Annotated[
        bool, typer.Option("--skip-readiness", help="live mode: start even on NO-GO")
    ] = False,
    events: Annotated[
        bool,
        typer.Option(
            "--events",
            help="send task events (-E) and keep the worker heartbeat, so Flower sees every "
            "job and shows the worker online (costs drain rate: bench/README.md); gossip and "
            "mingle stay off",
        ),
    ] = False,
) -> None:
    """Start worker consumers: one process per CPU of the container's limit (else one per
    core), each running one job at a time (solo) or, with --pool threads, up to --concurrency
    jobs at once (docs/scaling.md), with the lean flags (docs/architecture.md,
    docs/deployment.md).

    A consumer that dies is started again; a settings error or a live NO-GO stops them all.

    Without --events the consumers send no events at all, and Flower sees nothing.
    """
    settings = cli_settings()
    count, in_flight = _worker_shape(pool, processes, concurrency)
    module = app_module(app_option, settings)
    load_app(module, settings)  # one line and exit 2 here, not a restart loop of consumers
    base = [sys.executable, "-m", "celery", "-A", module, "worker", "--pool", pool]
    base += ["--concurrency", str(in_flight)]
    flags = EVENTS_WORKER_FLAGS if events else WORKER_FLAGS
    commands = [[*base, *flags, "-n", f"worker{i}@%h", *ctx.args] for i in range(1, count + 1)]
    env = celery_env(settings)
    if skip_readiness:
        env["SANDBOX_PLATFORM_SKIP_READINESS"] = "true"
    deadlines = _solo_deadlines(env, settings) if pool == "solo" else None
    try:
        code = Supervisor(commands, env, deadlines=deadlines).run()
    finally:
        if deadlines is not None:
            shutil.rmtree(deadlines.directory, ignore_errors=True)
    raise typer.Exit(code)


def _worker_shape(pool: str, processes: int | None, concurrency: int | None) -> tuple[int, int]:
    """(consumer processes, jobs in flight per process) for the options given."""
    if pool not in POOLS:
        raise typer.BadParameter(f"must be one of {', '.join(POOLS)}", param_hint="--pool")
    count = default_processes() if processes is None else processes
    if count < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--processes")
    in_flight = POOLS[pool] if concurrency is None else concurrency
    if in_flight < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--concurrency")
    if pool == "solo" and in_flight != 1:
        raise typer.BadParameter(
            "the solo pool runs one job at a time: use --pool threads for more",
            param_hint="--concurrency",
        )
    return count, in_flight


def _solo_deadlines(env: dict[str, str], settings: Settings) -> DeadlineWatch:
    """Solo consumers cannot enforce a time limit themselves: they tell the supervisor the
    running job's deadline, and it stops (and restarts) a consumer whose job is overdue."""
    from sandbox_platform.guards.builtin.time_limit import DEADLINE_DIR_ENV
    from sandbox_platform.ops.timeouts import record_timeout

    directory = Path(tempfile.mkdtemp(prefix="sandbox-platform-deadlines-"))
    env[DEADLINE_DIR_ENV] = str(directory)
    return DeadlineWatch(directory, lambda info: record_timeout(settings, info))


def beat(
    ctx: typer.Context,
    app_option: AppOption = None,
) -> None:
    """Start the scheduler (one leader at a time; extra beats stay standby).

    It runs the platform's schedule (heartbeat, queue watch, housekeeping) and your app's
    ``beat_schedule`` entries, under the platform's leader scheduler.
    """
    settings = cli_settings()
    module = app_module(app_option, settings)
    load_app(module, settings)
    command = [sys.executable, "-m", "celery", "-A", module, "beat", *ctx.args]
    raise typer.Exit(Supervisor([command], celery_env(settings)).run())


def demo(
    orders: Annotated[int, typer.Option(help="how many demo orders to run")] = 3,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the results")] = 60.0,
) -> None:
    """Run the platform end to end on embedded defaults: a worker processes demo orders."""
    from sandbox_platform.demo import run_demo

    raise typer.Exit(run_demo(cli_settings(), orders=orders, timeout=timeout))
