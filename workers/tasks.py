"""The example app's tasks (a re-export: see :mod:`sandbox_platform.examples.shop.tasks`)."""

from sandbox_platform.examples.shop.tasks import (
    CHARGE_TASK,
    RECEIPT_TASK,
    charge_card,
    mail_send,
    provider_charge,
    send_receipt,
)

__all__ = [
    "CHARGE_TASK",
    "RECEIPT_TASK",
    "charge_card",
    "mail_send",
    "provider_charge",
    "send_receipt",
]
