"""The guards a job passes, and the pipeline that runs them.

Mechanisms (usable on their own): the dry-run lock (:mod:`.dry_run`), the governor
(:mod:`.governor`), idempotency keys (:mod:`.idempotency`), retry policies (:mod:`.retry`),
the one-round-trip admission (:mod:`.admission`). Guards (:mod:`.builtin`, one module each)
put them on every guarded job through :class:`Guard` hooks; :mod:`.pipeline` walks them.
"""

from sandbox_platform.guards.base import EnqueueCall, Guard, Job, Option, OptionContext, Outcome
from sandbox_platform.guards.dry_run import DryRunLock, default_simulation, irreversible
from sandbox_platform.guards.governor import Decision, Governor
from sandbox_platform.guards.idempotency import IdempotencyManager, IdempotencyStore
from sandbox_platform.guards.retry import Jitter, RetryBackoffManager, RetryPolicy, compute_delay

__all__ = [
    "Decision",
    "DryRunLock",
    "EnqueueCall",
    "Governor",
    "Guard",
    "IdempotencyManager",
    "IdempotencyStore",
    "Jitter",
    "Job",
    "Option",
    "OptionContext",
    "Outcome",
    "RetryBackoffManager",
    "RetryPolicy",
    "compute_delay",
    "default_simulation",
    "irreversible",
]
