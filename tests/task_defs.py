"""Tasks used by the integration tests. Their real effects go to sinks the tests check:
a file (one line per real call), Redis lists, or database rows."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from contextvars import ContextVar
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import redis
import structlog
from celery import Celery
from sqlalchemy import Column, Integer, MetaData, String, Table, insert

from sandbox_platform.coordination.idempotency import record_effect
from sandbox_platform.core.apps import active_settings
from sandbox_platform.core.context import current_correlation_id
from sandbox_platform.core.jobscope import current_job
from sandbox_platform.db.session import platform_session, register_app_metadata
from sandbox_platform.guards.dry_run import irreversible
from sandbox_platform.guards.retry import Jitter, RetryPolicy
from sandbox_platform.tasks import guarded_task

FAST_RETRY = RetryPolicy(max_retries=2, base=0.05, cap=0.2, jitter=Jitter.NONE)

app_metadata = register_app_metadata(MetaData())
orders = Table(
    "test_orders",
    app_metadata,
    Column("id", Integer, primary_key=True),
    Column("value", String(64), nullable=False),
)


def _redis() -> redis.Redis:
    settings = active_settings()
    assert settings.redis_url is not None
    return redis.Redis.from_url(settings.redis_url)


@irreversible("payment", simulate=lambda sink, n: {"simulated_charge": n})
def real_charge(sink: str, n: int) -> dict[str, Any]:
    with Path(sink).open("a") as handle:
        handle.write(f"{n}\n")
    return {"charged": n}


#: set by every interleaved job; a job that finds it set sees a previous job's context
LEFT_BEHIND: ContextVar[int | None] = ContextVar("left_behind", default=None)


def register(app: Celery) -> SimpleNamespace:
    """Declare the test tasks on ``app``; return them by name."""

    @guarded_task(app, name="tests.charge")
    def charge(sink: str, n: int) -> dict[str, Any]:
        return real_charge(sink, n)

    @guarded_task(app, name="tests.charge_in_thread")
    def charge_in_thread(sink: str, n: int) -> dict[str, Any]:
        results: list[dict[str, Any]] = []
        thread = threading.Thread(target=lambda: results.append(real_charge(sink, n)))
        thread.start()
        thread.join()
        return results[0]

    @guarded_task(app, name="tests.charge_then_child")
    def charge_then_child(sink: str, n: int) -> dict[str, Any]:
        charge.delay(sink, n + 1000)
        return real_charge(sink, n)

    @guarded_task(app, name="tests.add_mark")
    def add_mark(previous: Any, sink: str, n: int) -> dict[str, Any]:
        return real_charge(sink, n)

    @guarded_task(app, name="tests.flaky", retry=FAST_RETRY)
    def flaky(key: str, failures: int) -> int:
        calls = int(_redis().incr(key))
        if calls <= failures:
            raise RuntimeError(f"transient failure {calls}")
        return calls

    @guarded_task(app, name="tests.always_fails", retry=FAST_RETRY)
    def always_fails(key: str) -> None:
        _redis().rpush(key, str(time.time()))
        raise RuntimeError("permanent failure")

    @guarded_task(app, name="tests.limited", governor=["test-bucket"])
    def limited(key: str, i: int) -> int:
        _redis().rpush(key, str(i))
        return i

    @guarded_task(app, name="tests.stamp")
    def stamp(key: str, i: int) -> int:
        _redis().rpush(key, f"{i} {time.time()}")
        return i

    @guarded_task(app, name="tests.limited_stamp", governor=["test-bucket"])
    def limited_stamp(key: str, i: int) -> int:
        _redis().rpush(key, f"{i} {time.time()}")
        return i

    @guarded_task(app, name="tests.effect_once", idempotency_key="{order_id}", idempotency_lease=3)
    def effect_once(order_id: str, sleep_seconds: float, started_key: str) -> dict[str, Any]:
        job = current_job()
        assert job is not None
        starts = _redis().rpush(started_key, f"{os.getpid()}:{job.fencing_token}")
        if starts == 1:  # only the first start is slow (the crash test kills it there)
            time.sleep(sleep_seconds)
        with platform_session() as session:
            inserted = record_effect(
                session,
                f"effect:{order_id}",
                task_id=job.task_id,
                fencing_token=job.fencing_token,
                result={"order_id": order_id},
                correlation_id=None,
            )
        return {"order_id": order_id, "inserted": inserted}

    @guarded_task(app, name="tests.ttl_once", idempotency_key="{k}", idempotency_ttl=1)
    def ttl_once(k: str, runs_key: str) -> str:
        _redis().rpush(runs_key, k)
        return k

    @guarded_task(
        app, name="tests.fails_until_fixed", idempotency_key="{order_id}", retry=FAST_RETRY
    )
    def fails_until_fixed(order_id: str, runs_key: str) -> str:
        client = _redis()
        if not client.exists("fixed"):
            raise RuntimeError(f"order {order_id} cannot be processed yet")
        client.rpush(runs_key, order_id)
        return order_id

    @guarded_task(app, name="tests.poison")
    def poison(marker_key: str) -> None:
        _redis().rpush(marker_key, str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)

    @guarded_task(app, name="tests.write_order")
    def write_order(value: str) -> str:
        with platform_session() as session:
            session.execute(insert(orders).values(value=value))
        return value

    @guarded_task(app, name="tests.interleave")
    def interleave(n: int, pause: float, sink: str, seen_key: str) -> int:
        """One of many jobs in flight: reports what it found of earlier jobs' context on its
        thread, logs, makes an irreversible call, waits, and reports its own ids."""
        job = current_job()
        assert job is not None
        found = {"var": LEFT_BEHIND.get(), "log": structlog.contextvars.get_contextvars()}
        LEFT_BEHIND.set(n)
        structlog.contextvars.bind_contextvars(job_n=n)
        structlog.get_logger("tests.interleave").info("interleaved job", n=n)
        real_charge(sink, n)
        time.sleep(pause)
        report = {
            "n": n,
            "task_id": job.task_id,
            "correlation_id": current_correlation_id(),
            "found_var": found["var"],
            "found_job_n": found["log"].get("job_n"),
            "thread": threading.get_ident(),
        }
        _redis().rpush(seen_key, json.dumps(report))
        return n

    @guarded_task(app, name="tests.idem_count", idempotency_key="{k}")
    def idem_count(k: str, counter: str) -> str:
        _redis().incr(counter)
        return k

    return SimpleNamespace(
        interleave=interleave,
        idem_count=idem_count,
        charge=charge,
        charge_in_thread=charge_in_thread,
        charge_then_child=charge_then_child,
        add_mark=add_mark,
        flaky=flaky,
        always_fails=always_fails,
        limited=limited,
        stamp=stamp,
        limited_stamp=limited_stamp,
        effect_once=effect_once,
        write_order=write_order,
        ttl_once=ttl_once,
        fails_until_fixed=fails_until_fixed,
        poison=poison,
    )
