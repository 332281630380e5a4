"""``worker``, ``beat`` and ``demo``: the processes the platform runs, supervised."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from sandbox_platform.cli.common import celery_env, cli_settings
from sandbox_platform.procs.supervisor import Supervisor

__all__ = ["EVENTS_WORKER_FLAGS", "WORKER_FLAGS", "beat", "demo", "worker"]

#: the lean consumer: no gossip, no mingle, no worker heartbeat, no task events
WORKER_FLAGS = ["--without-gossip", "--without-mingle", "--without-heartbeat"]
#: ``--events``: task events on and the worker heartbeat kept, so Flower sees every job
EVENTS_WORKER_FLAGS = ["-E", "--without-gossip", "--without-mingle"]
EXTRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}


def worker(
    ctx: typer.Context,
    processes: Annotated[
        int | None, typer.Option(help="consumer processes (default: one per core)")
    ] = None,
    pool: Annotated[str, typer.Option(help="solo, or prefork for hard time limits")] = "solo",
    app_module: Annotated[str, typer.Option("--app", help="Celery app module")] = "workers",
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
    """Start worker consumers: one process per core, solo pool, lean flags (docs/architecture.md).

    A consumer that dies is started again; a settings error or a live NO-GO stops them all.

    Without --events the consumers send no events at all, and Flower sees nothing.
    """
    settings = cli_settings()
    if pool not in ("solo", "prefork"):
        raise typer.BadParameter("must be solo or prefork", param_hint="--pool")
    count = processes or os.cpu_count() or 1
    if count < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--processes")
    base = [sys.executable, "-m", "celery", "-A", app_module, "worker", "--pool", pool]
    if pool == "prefork":
        base += ["--concurrency", "1"]
    flags = EVENTS_WORKER_FLAGS if events else WORKER_FLAGS
    commands = [[*base, *flags, "-n", f"worker{i}@%h", *ctx.args] for i in range(1, count + 1)]
    env = celery_env(settings)
    if skip_readiness:
        env["SANDBOX_PLATFORM_SKIP_READINESS"] = "true"
    raise typer.Exit(Supervisor(commands, env).run())


def beat(
    ctx: typer.Context,
    app_module: Annotated[str, typer.Option("--app", help="Celery app module")] = "beat",
) -> None:
    """Start the scheduler (one leader at a time; extra beats stay standby)."""
    settings = cli_settings()
    command = [sys.executable, "-m", "celery", "-A", app_module, "beat", *ctx.args]
    raise typer.Exit(Supervisor([command], celery_env(settings)).run())


def demo(
    orders: Annotated[int, typer.Option(help="how many demo orders to run")] = 3,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the results")] = 60.0,
) -> None:
    """Run the platform end to end on embedded defaults: a worker processes demo orders."""
    from sandbox_platform.demo import run_demo

    raise typer.Exit(run_demo(cli_settings(), orders=orders, timeout=timeout))
