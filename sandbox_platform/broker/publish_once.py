"""Enqueue-side dedupe folded into the publish: the message and its idempotency key in one
Redis call.

A guarded job with an idempotency key marks, at enqueue, the first job published under that
key (the ``tid`` field of the key's record ``{prefix}:idem:r:{key}``). Done by itself that is
one script round trip before the publish. When the broker is the coordination Redis, the
idempotency guard instead puts ``[record key, "<task id> <fingerprint>", ttl]`` in the
message's ``PUBLISH_ONCE_HEADER``; the platform's transport takes the header out and runs one
script (``broker/lua/publish_once.lua``): if no job is marked it marks this one *and* pushes the
message; if the mark names the same task id (a retry or a deferral publishes the job again)
the message is pushed; otherwise nothing is pushed. The *answer* (``""`` when the message was
pushed, else what the record holds) is written into the :class:`PublishAnswer` the guard
put in the header (its fourth element) for itself to read after the publish: the header never
leaves the process (the transport takes it out before the message is serialized), so nothing
needs a registry, and two apps sharing kombu's connection pool cannot mix their answers.
"""

from __future__ import annotations

__all__ = ["PUBLISH_ONCE_HEADER", "PublishAnswer"]

PUBLISH_ONCE_HEADER = "sp_publish_once"


class PublishAnswer:
    """Where the transport answers one folded publish: ``held`` stays None when no platform
    transport handled it (the message was published as it was)."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held: str | None = None

    def __json__(self) -> None:  # never serialized with a message; safe if it ever is
        return None
