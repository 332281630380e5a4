"""Enqueue shortcuts: an optional protocol beside :class:`~sandbox_platform.guards.base.Guard`.

A guard only needs :class:`Guard`'s hooks. One that can make enqueueing cheaper also
subclasses :class:`EnqueueShortcuts` and overrides what it uses:

- ``plans_at_enqueue``: its ``contribute`` can run at enqueue too (it reads only the job's
  name, options, arguments and the headers ``at_enqueue`` set); when every contributing guard
  says so, the admission is planned at enqueue and made with the fetch
  (:mod:`sandbox_platform.guards.prefetch`);
- ``at_enqueue_batch``: a bulk enqueue's Redis work for every call in one round trip;
- ``after_publish``: read what the transport answered for work folded into the publish;
- ``at_enqueue_failed``: undo what was written when the publish failed.

The pipeline calls these hooks only on guards that are ``EnqueueShortcuts``. The built-in
idempotency guard (enqueue-side dedupe folded into the publish or the batch) and governor
guard (admission planned at enqueue) are the two that do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from sandbox_platform.guards.base import EnqueueCall

__all__ = ["SHORTCUT_HOOKS", "EnqueueShortcuts"]

#: the hooks of the protocol (the pipeline calls them on shortcut guards only)
SHORTCUT_HOOKS = ("at_enqueue_batch", "after_publish", "at_enqueue_failed")


class EnqueueShortcuts:
    """Mix into a guard (``class MyGuard(EnqueueShortcuts, Guard)``); every hook is a no-op."""

    #: the guard's name (``Guard.name``)
    name: ClassVar[str] = "guard"
    #: ``contribute`` may run at enqueue (see the module)
    plans_at_enqueue: ClassVar[bool] = False

    def at_enqueue_batch(self, calls: Sequence[EnqueueCall]) -> None:
        """After ``at_enqueue`` of every call of a bulk enqueue: the Redis work the guard
        left for the batch (one round trip for all); nothing is published when it raises."""
        return None

    def after_publish(self, call: EnqueueCall) -> None:
        """After the publish of a single enqueue: read what the transport answered for work
        the guard folded into the publish (may set ``call.existing_id``, or raise)."""
        return None

    def at_enqueue_failed(self, calls: Sequence[EnqueueCall]) -> None:
        """Publishing ``calls`` failed after every ``at_enqueue`` passed: undo what the guard
        wrote for them (nothing was sent)."""
        return None
