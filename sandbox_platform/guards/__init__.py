"""The guards a job passes: dry-run lock, governor, idempotency, retry."""

from sandbox_platform.guards.dry_run import DryRunLock, default_simulation, irreversible
from sandbox_platform.guards.governor import Decision, Governor
from sandbox_platform.guards.idempotency import IdempotencyManager, IdempotencyStore
from sandbox_platform.guards.retry import Jitter, RetryBackoffManager, RetryPolicy, compute_delay

__all__ = [
    "Decision",
    "DryRunLock",
    "Governor",
    "IdempotencyManager",
    "IdempotencyStore",
    "Jitter",
    "RetryBackoffManager",
    "RetryPolicy",
    "compute_delay",
    "default_simulation",
    "irreversible",
]
