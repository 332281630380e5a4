"""Tasks for the reliability suite (run by ``celery -A tests.faults_app worker``)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import redis
from celery import Celery

from sandbox_platform import Jitter, RetryPolicy, guarded_task, irreversible, platform_session
from sandbox_platform.coordination.idempotency import record_effect
from sandbox_platform.core.apps import active_settings
from sandbox_platform.core.jobscope import current_job

#: a retry delay that reaches a short visibility timeout (the platform must cap it)
SLOW_RETRY = RetryPolicy(max_retries=2, base=10.0, cap=10.0, jitter=Jitter.NONE)
NO_RETRY = RetryPolicy(max_retries=0)
#: transient faults (a Redis restart under a running job) are retried quickly
QUICK_RETRY = RetryPolicy(max_retries=5, base=0.5, cap=2.0, jitter=Jitter.NONE)


def _redis() -> redis.Redis:
    url = active_settings().redis_url
    assert url is not None
    return redis.Redis.from_url(url)


@irreversible("payout", simulate=lambda account, amount, note: {"payout": "sim"})
def payout(account: str, amount: int, note: str) -> dict[str, Any]:
    raise AssertionError("a real payout in sandbox mode")


def register_faults(app: Celery) -> SimpleNamespace:
    @guarded_task(app, name="faults.slow_retry", retry=SLOW_RETRY)
    def slow_retry(key: str) -> None:
        _redis().rpush(key, "attempt")
        raise RuntimeError("always fails")

    @guarded_task(app, name="faults.hang", time_limit=2, retry=NO_RETRY)
    def hang(key: str) -> None:
        _redis().rpush(key, "started")
        time.sleep(3600)

    @guarded_task(app, name="faults.long_idem", idempotency_key="{order_id}")
    def long_idem(order_id: str, seconds: float, key: str) -> str:
        _redis().rpush(key, order_id)
        time.sleep(seconds)
        return order_id

    @guarded_task(app, name="faults.record", retry=NO_RETRY)
    def record(key: str, value: str) -> str:
        _redis().rpush(key, value)
        return value

    @guarded_task(app, name="faults.record_retrying", retry=QUICK_RETRY)
    def record_retrying(key: str, value: str) -> str:
        _redis().rpush(key, value)
        return value

    @guarded_task(app, name="faults.limited", governor=["fault-bucket"])
    def limited(key: str, i: int) -> int:
        _redis().rpush(key, i)
        return i

    @guarded_task(app, name="faults.limited_at", governor=["fault-bucket"])
    def limited_at(key: str) -> None:
        _redis().rpush(key, repr(time.time()))

    @guarded_task(app, name="faults.always_fails", retry=NO_RETRY)
    def always_fails(key: str) -> None:
        _redis().rpush(key, "attempt")
        raise RuntimeError("final failure")

    @guarded_task(app, name="faults.secretive", retry=NO_RETRY)
    def secretive(card: int, card_text: str, password: str, note: str, token: str) -> None:
        payout(card_text, card, note)
        raise RuntimeError(
            f"declined card {card} ({card_text}) password={password} note={note} "
            f"Authorization: Bearer {token}"
        )

    @guarded_task(app, name="faults.settle", idempotency_key="{order_id}", idempotency_lease=4)
    def settle(order_id: str, starts_key: str) -> dict[str, Any]:
        job = current_job()
        assert job is not None
        client = _redis()
        client.rpush(starts_key, order_id)
        pause = float(client.get("faults:settle:pause") or 0.02)  # a test may hold it here
        deadline = time.monotonic() + pause
        while time.monotonic() < deadline and client.exists("faults:settle:pause"):
            time.sleep(0.05)
        time.sleep(0.02)  # work a SIGKILL can interrupt
        with platform_session() as session:
            inserted = record_effect(
                session,
                f"settle:{order_id}",
                task_id=job.task_id,
                fencing_token=job.fencing_token,
                result={"order_id": order_id},
            )
        return {"order_id": order_id, "inserted": inserted}

    return SimpleNamespace(
        settle=settle,
        slow_retry=slow_retry,
        hang=hang,
        long_idem=long_idem,
        record=record,
        record_retrying=record_retrying,
        limited=limited,
        limited_at=limited_at,
        always_fails=always_fails,
        secretive=secretive,
    )
