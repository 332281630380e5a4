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
pushed, else what the record holds) is handed to the app's
:class:`~sandbox_platform.broker.hooks.BrokerHooks` per task id, for the guard to read after
the publish.
"""

from __future__ import annotations

__all__ = ["PUBLISH_ONCE_HEADER"]

PUBLISH_ONCE_HEADER = "sp_publish_once"
