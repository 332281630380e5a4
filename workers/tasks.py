"""Example task module: a payment-like task and a notification-like task.

``charge_card`` enqueues ``send_receipt`` as a child task, so one correlation id follows
the order from the enqueuing app through both.
"""

from __future__ import annotations

from typing import Any

import structlog

from workers import app

log = structlog.get_logger(__name__)


@app.task(name="workers.charge_card")
def charge_card(order_id: str, amount_cents: int, email: str | None = None) -> dict[str, Any]:
    """Charge a card for an order (payment-like, irreversible)."""
    log.info("charging card", order_id=order_id, amount_cents=amount_cents)
    result = {"order_id": order_id, "amount_cents": amount_cents, "status": "charged"}
    if email:
        send_receipt.delay(email, order_id)
    return result


@app.task(name="workers.send_receipt")
def send_receipt(email: str, order_id: str) -> dict[str, Any]:
    """Send a receipt email (notification-like, irreversible)."""
    log.info("sending receipt", email=email, order_id=order_id)
    return {"email": email, "order_id": order_id, "status": "sent"}
