"""What the transport does with the fetch and ack scripts' replies, apart from delivering:
the headers only the transport may set on a fetched message, the statuses of what rode with
the acknowledgements, and the elements of a queue that are not messages.

An element of a queue's list that is not a kombu message (raw bytes, not JSON) is handed to
the worker's handler (a dead letter, reason ``undecodable``); the fetch script has already put
it in ``<queue>.malformed`` and it leaves that list once stored. Without a handler, or when it
fails, it stays there (kombu's stock consumer: it is put there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis
import structlog
from kombu.utils.encoding import bytes_to_str

from sandbox_platform.broker.ack_riders import Rider
from sandbox_platform.core.context import ADMITTED_HEADER, DELIVERY_HEADER

__all__ = [
    "HANDLER_ATTRIBUTE",
    "MalformedHandler",
    "hand_over_malformed",
    "set_delivery_headers",
    "set_malformed_handler",
    "settle_riders",
]

log = structlog.get_logger(__name__)

#: the handler of undecodable elements: (queue, raw, error)
MalformedHandler = Callable[[str, bytes, BaseException], None]
#: where a transport keeps its handler (set by the worker's consumer on its connection)
HANDLER_ATTRIBUTE = "sp_malformed_handler"


def set_delivery_headers(
    payload: dict[str, Any], admission: Sequence[Any] | None, delivery: str | None = None
) -> None:
    """Only the transport sets the admitted and delivery headers: whatever a message carried
    is dropped, and the fetch script's admission (if it made one) and ``delivery`` (the tag,
    when completions may ride with its acknowledgement) are put in their place."""
    headers = payload.get("headers")
    if not isinstance(headers, dict):
        return
    headers.pop(ADMITTED_HEADER, None)
    headers.pop(DELIVERY_HEADER, None)
    if delivery:
        headers[DELIVERY_HEADER] = delivery
    if admission and admission[0]:
        status, token, result, wait_us, resource = admission
        headers[ADMITTED_HEADER] = [
            bytes_to_str(status),
            int(token),
            bytes_to_str(result),
            int(wait_us),
            bytes_to_str(resource),
        ]


def settle_riders(riders: Sequence[Rider], reply: list[Any], first: int) -> int:
    """Settle each rider with its status in ``reply`` (from index ``first``, one per rider:
    see ``riders_settle``); warn of those not stored. Where the reply goes on."""
    for rider, status in zip(riders, reply[first : first + len(riders)], strict=True):
        settled = rider.settle(status)
        if settled is None or settled.stored:
            continue
        if settled.stale:
            log.warning("idempotency lease lost before completion", record=settled.record_key)
        else:
            log.error(
                "idempotency result not stored: its record could not take it",
                record=settled.record_key,
                error=settled.error,
            )
    return first + len(riders)


def set_malformed_handler(transport: Any, handler: MalformedHandler | None) -> None:
    """Set (or with None, clear) the handler of undecodable queue elements of one connection's
    ``transport`` (the consumer that owns the connection sets it); a transport that is not the
    platform's has no place for one."""
    if hasattr(type(transport), HANDLER_ATTRIBUTE):
        setattr(transport, HANDLER_ATTRIBUTE, handler)


def hand_over_malformed(
    transport: object,
    client: redis.Redis,
    queue: str,
    raw: Any,
    error: BaseException,
    *,
    kept: bool,
) -> None:
    """Dead-letter an element of ``queue`` that is not a message, through ``transport``'s
    handler. ``kept``: it is already in ``<queue>.malformed`` (the fetch script put it there)
    and leaves it once stored."""
    data = raw if isinstance(raw, bytes) else str(raw).encode()
    handler: MalformedHandler | None = getattr(transport, HANDLER_ATTRIBUTE, None)
    try:
        if handler is None:
            raise RuntimeError("no handler for undecodable messages")
        handler(queue, data, error)
    except Exception:
        log.exception("an undecodable message could not be dead-lettered; kept aside", queue=queue)
        if not kept:
            client.lpush(f"{queue}.malformed", data)
        return
    if kept:
        client.lrem(f"{queue}.malformed", 1, data)  # type: ignore[arg-type]  # bytes are fine
