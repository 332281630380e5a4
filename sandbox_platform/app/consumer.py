"""The platform's worker consumer: one malformed message never stops a worker.

Celery's consumer dies ("Unrecoverable error") when a message's headers name a task but its
body is not ``[args, kwargs, embed]``; the message goes back to the queue and kills the next
worker too. This consumer catches what handling one message raises, stores the message as a
dead letter (reason ``malformed``, raw bytes base64-encoded), acknowledges it and goes on. A
body that cannot be decoded is dead-lettered ``undecodable`` before Celery drops it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from celery.worker.consumer import Consumer

from sandbox_platform.app.rejects import dead_letter_message, dead_letter_raw
from sandbox_platform.broker.transport import set_malformed_handler

__all__ = ["SafeConsumer"]

log = structlog.get_logger(__name__)


class SafeConsumer(Consumer):
    def connect(self) -> Any:
        """The broker connection, its transport told where undecodable queue elements (raw
        bytes in a queue) go: this consumer's app's dead letters."""
        connection = super().connect()
        set_malformed_handler(connection.transport, self.on_undecodable)
        return connection

    def on_undecodable(self, queue: str, raw: bytes, error: BaseException) -> None:
        dead_letter_raw(self.app, queue, raw, error)

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        handler: Callable[[Any], Any] = super().create_task_handler(*args, **kwargs)
        connection_errors = tuple(getattr(self, "connection_errors", ()))

        def on_task_received(message: Any) -> Any:
            try:
                return handler(message)
            except connection_errors:
                raise
            except Exception as exc:
                self.on_malformed(message, exc)
                return None

        return on_task_received

    def on_malformed(self, message: Any, exc: BaseException) -> None:
        log.error("malformed message dead-lettered; the worker goes on", error=repr(exc))
        dead_letter_message(self.app, "malformed", message, exc)
        try:
            message.ack()
        except Exception:
            log.exception("could not acknowledge a malformed message")

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        dead_letter_message(self.app, "undecodable", message, exc)
        super().on_decode_error(message, exc)
