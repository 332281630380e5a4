"""The example shop's tasks: a payment-like task and a notification-like task.

Both are guarded: an idempotency key from their arguments, a governor resource, a retry
policy. Their irreversible calls (the payment provider, the mail server) go through
``irreversible``: in sandbox mode they are intercepted, recorded and simulated. A charge
enqueues its receipt as a child task, so one correlation id follows the order through both.
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog

from sandbox_platform import RetryPolicy, declare_default_limits, guarded_task, irreversible
from sandbox_platform.examples.shop.celery_app import app

__all__ = [
    "CHARGE_TASK",
    "RECEIPT_TASK",
    "charge_card",
    "mail_send",
    "provider_charge",
    "send_receipt",
]

log = structlog.get_logger(__name__)

#: the task names (0.1's example app's, kept so queued jobs and records still match)
CHARGE_TASK = "workers.charge_card"
RECEIPT_TASK = "workers.send_receipt"

declare_default_limits(app, {"payments": [(20, 1.0), (10_000, 86_400.0)], "email": [(50, 1.0)]})


def _simulated_charge(order_id: str, amount_cents: int) -> dict[str, Any]:
    return {"charge_id": f"sim_{order_id}", "amount_cents": amount_cents, "simulated": True}


@irreversible("payment", simulate=_simulated_charge)
def provider_charge(order_id: str, amount_cents: int) -> dict[str, Any]:
    """Stand-in for the payment provider's API call (the real effect in live mode)."""
    return {"charge_id": f"ch_{uuid.uuid4().hex[:16]}", "amount_cents": amount_cents}


@irreversible("email", simulate=lambda email, order_id: {"message_id": "sim", "to": email})
def mail_send(email: str, order_id: str) -> dict[str, Any]:
    """Stand-in for the mail server call (the real effect in live mode)."""
    return {"message_id": uuid.uuid4().hex, "to": email}


@guarded_task(
    app,
    name=CHARGE_TASK,
    idempotency_key="{order_id}",
    governor=["payments"],
    retry=RetryPolicy(max_retries=5, base=1.0, cap=60.0),
)
def charge_card(order_id: str, amount_cents: int, email: str | None = None) -> dict[str, Any]:
    """Charge a card for an order, then send the receipt as a child task."""
    log.info("charging card", order_id=order_id, amount_cents=amount_cents)
    charge = provider_charge(order_id, amount_cents)
    if email:
        send_receipt.delay(email, order_id)
    return {"order_id": order_id, "status": "charged", "charge": charge}


@guarded_task(
    app,
    name=RECEIPT_TASK,
    idempotency_key="{order_id}:{email}",
    governor=["email"],
    retry=RetryPolicy(max_retries=3, base=2.0, cap=60.0),
)
def send_receipt(email: str, order_id: str) -> dict[str, Any]:
    """Send the receipt email for an order."""
    log.info("sending receipt", email=email, order_id=order_id)
    return {"email": email, "order_id": order_id, "status": "sent", **mail_send(email, order_id)}
