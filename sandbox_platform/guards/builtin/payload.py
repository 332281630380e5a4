"""The payload guard: arguments are JSON within the size limit, or nothing is published."""

from __future__ import annotations

from sandbox_platform.core.payload import check_payload
from sandbox_platform.guards.base import EnqueueCall, Guard

__all__ = ["PayloadGuard"]


class PayloadGuard(Guard):
    """Raises :class:`~sandbox_platform.core.errors.PayloadError` at the call site."""

    name = "payload"

    def at_enqueue(self, call: EnqueueCall) -> None:
        limit = call.services.settings.payload_limit_bytes
        check_payload(call.task_name, call.args, call.kwargs, limit)
