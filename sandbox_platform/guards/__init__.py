"""The guards a job passes, and the pipeline that runs them.

Mechanisms (usable on their own): the dry-run lock (:mod:`.dry_run`), retry policies
(:mod:`.retry`), and, re-exported from :mod:`sandbox_platform.coordination`, the governor and
idempotency keys. Guards (:mod:`.builtin`, one module each) put them on every guarded job
through :class:`Guard` hooks; :mod:`.pipeline` walks them; :mod:`.testing` unit-tests a
guard.
"""

from sandbox_platform.coordination.admission import Admission, AdmissionRequest
from sandbox_platform.coordination.governor import Decision, Governor
from sandbox_platform.coordination.idempotency import IdempotencyManager, IdempotencyStore
from sandbox_platform.guards.base import EnqueueCall, Guard, Job, Option, OptionContext, Outcome
from sandbox_platform.guards.dry_run import DryRunLock, default_simulation, irreversible
from sandbox_platform.guards.retry import Jitter, RetryBackoffManager, RetryPolicy, compute_delay
from sandbox_platform.guards.shortcuts import EnqueueShortcuts

__all__ = [
    "Admission",
    "AdmissionRequest",
    "Decision",
    "DryRunLock",
    "EnqueueCall",
    "EnqueueShortcuts",
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
