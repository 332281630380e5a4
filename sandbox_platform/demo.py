"""``sandbox-platform demo``: the platform end to end on embedded defaults.

Migrates the sandbox database, starts a real worker process, enqueues demo orders under one
correlation id, waits for every result and prints them, then stops the worker.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path

from celery import Celery
from celery.app.utils import find_app
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from sandbox_platform.core.context import bind_correlation_id
from sandbox_platform.core.embedded import embedded_redis_running, stop_embedded_redis
from sandbox_platform.core.live_requirements import EXAMPLE_APP
from sandbox_platform.core.redis_client import redis_url
from sandbox_platform.core.settings import Settings
from sandbox_platform.db import migrate
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import DryRunEvent
from sandbox_platform.procs.worker import WorkerSubprocess

__all__ = ["CHARGE_TASK", "run_demo"]

#: the example shop's charge task (sandbox_platform.examples.shop.tasks), by name
CHARGE_TASK = "workers.charge_card"


def _demo_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["SANDBOX_PLATFORM_REDIS_URL"] = redis_url(settings)
    env["SANDBOX_PLATFORM_RESULT_BACKEND"] = settings.result_backend or "redis"
    env["SANDBOX_PLATFORM_DATA_DIR"] = str(settings.data_dir)
    return env


def _wait_for_intercepts(
    settings: Settings, correlation_id: str, expected: int, timeout: float
) -> int:
    """Dry-run events of this demo's correlation id, once the worker has written them."""
    deadline = time.monotonic() + timeout
    while True:
        with session_scope(settings.active_database_url) as session:
            count = int(
                session.scalar(
                    select(func.count())
                    .select_from(DryRunEvent)
                    .where(DryRunEvent.correlation_id == correlation_id)
                )
                or 0
            )
        if count >= expected or time.monotonic() > deadline:
            return count
        time.sleep(0.2)


def run_demo(settings: Settings, *, orders: int, timeout: float) -> int:
    console = Console()
    started_redis = settings.embedded_redis and not embedded_redis_running(settings.data_dir)
    try:
        return _run(settings, console, orders=orders, timeout=timeout)
    finally:
        if started_redis:  # leave no daemon behind that the demo itself started
            stop_embedded_redis(settings.data_dir)


def _run(settings: Settings, console: Console, *, orders: int, timeout: float) -> int:
    env = _demo_env(settings)
    os.environ.update(env)  # the enqueuing side below uses the same app configuration
    migrate.upgrade(settings.active_database_url)
    console.print(f"[bold]mode[/]: {settings.mode.value}   database: migrated")

    # the bundled example, found by name as ``celery -A`` finds it (it is a top-level module
    # of the package, above this one), built from the environment set above
    app: Celery = find_app(EXAMPLE_APP)
    charge_card = app.tasks[CHARGE_TASK]

    log_path = Path(tempfile.gettempdir()) / f"sandbox-platform-demo-{os.getpid()}.log"
    worker = WorkerSubprocess(EXAMPLE_APP, env=env, log_path=log_path)
    worker.start()
    try:
        worker.wait_ready(app, timeout=timeout)
        console.print(f"worker {worker.hostname} (pid {worker.pid}) ready")
        run = uuid.uuid4().hex[:6]
        with bind_correlation_id() as correlation_id:
            results = [
                charge_card.delay(f"order-{run}-{n}", 1000 + n, email=f"buyer{n}@example.com")
                for n in range(1, orders + 1)
            ]
        table = Table(
            "task id", "order", "status", "charge", title=f"correlation id {correlation_id}"
        )
        for result in results:
            value = result.get(timeout=timeout)
            charge = value.get("charge") or {}
            table.add_row(
                result.id,
                str(value.get("order_id")),
                str(value.get("status")),
                str(charge.get("charge_id")),
            )
        console.print(table)
        intercepted = _wait_for_intercepts(settings, correlation_id, 2 * orders, timeout)
        console.print(
            f"{orders} orders processed; {intercepted} irreversible calls (charges and "
            f"receipts) intercepted and recorded in the {settings.mode.value} database; "
            f"worker log: {log_path}"
        )
        return 0
    finally:
        worker.stop()
