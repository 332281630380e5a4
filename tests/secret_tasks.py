"""Tasks with secret arguments for tests/reliability/test_secret_arguments.py (registered on
``tests.faults_app``). What they do is steered by Redis flags the test sets."""

from __future__ import annotations

import hashlib
import logging
import time
from types import SimpleNamespace
from typing import Any

import redis
from celery import Celery

from sandbox_platform import RetryPolicy, guarded_task, irreversible
from sandbox_platform.core.apps import active_settings
from sandbox_platform.core.jobscope import current_job

PREFIX = "secret-tasks"
#: while this key exists, a started job waits (the test captures it unacknowledged)
HOLD = f"{PREFIX}:hold"
#: a job whose order id is in this set fails with its secrets in the error's message
DECLINE = f"{PREFIX}:decline"
STARTED = f"{PREFIX}:started"
#: jobs of ``short`` wait until this many have started (threads: in flight together)
BARRIER = f"{PREFIX}:barrier"
ENTERED = f"{PREFIX}:entered"
#: one entry per effect: "<order id> <sha256 of what the body received>"
EFFECTS = f"{PREFIX}:effects"

log = logging.getLogger("shop.payments")


def _redis() -> redis.Redis:
    url = active_settings().redis_url
    assert url is not None
    return redis.Redis.from_url(url)


def received(*values: Any) -> str:
    """What the body received, as a digest (the test compares it with the plaintext's)."""
    return hashlib.sha256(repr(values).encode()).hexdigest()


@irreversible("card_charge", simulate=lambda card, cvv, api_key: {"charge": "simulated"})
def charge_card(card: str, cvv: Any, api_key: str) -> dict[str, Any]:
    raise AssertionError("a real charge in sandbox mode")


def register_secret_tasks(app: Celery) -> SimpleNamespace:
    @guarded_task(
        app,
        name="secrets.pay",
        secret=["card", "password", "token", "api_key", "cvv"],
        idempotency_key="pay:{order_id}",
        retry=RetryPolicy(max_retries=0),
    )
    def pay(
        order_id: str, card: str, password: str, token: str, api_key: str, *, cvv: Any
    ) -> dict[str, Any]:
        client = _redis()
        client.incr(STARTED)
        deadline = time.monotonic() + 60
        while client.exists(HOLD) and time.monotonic() < deadline:
            time.sleep(0.05)
        log.warning("charging %s for %s", card, order_id)  # bare values, stdlib logging
        log.warning("user password is %s and the cvv %s", password, cvv)
        print("calling the partner with", token, api_key)
        charge_card(card, cvv, api_key)
        if client.sismember(DECLINE, order_id):
            raise RuntimeError(
                f"declined card {card} cvv {cvv} for password {password}, key {api_key}, "
                f"token {token}"
            )
        client.rpush(EFFECTS, f"{order_id} {received(card, password, token, api_key, cvv)}")
        job = current_job()
        return {"order_id": order_id, "task_id": job.task_id if job else None}

    @guarded_task(app, name="secrets.short", secret=["pin"])
    def short(pin: str, label: str) -> str:
        # the pin is short: masked as a whole token only, never inside the task id
        client = _redis()
        client.incr(ENTERED)
        deadline = time.monotonic() + 20
        while int(client.get(ENTERED) or 0) < int(client.get(BARRIER) or 0):
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        job = current_job()
        log.warning("pin %s for %s, task %s", pin, label, job.task_id if job else "")
        return label

    return SimpleNamespace(pay=pay, short=short)
