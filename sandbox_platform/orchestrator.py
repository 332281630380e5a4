"""The seed's API, at the import path its examples use::

    from sandbox_platform.orchestrator import SandboxOrchestrator

A re-export only: the facade lives in :mod:`sandbox_platform.facade`.
"""

from sandbox_platform.coordination.governor import Governor
from sandbox_platform.coordination.idempotency import IdempotencyManager
from sandbox_platform.facade.orchestrator import SandboxOrchestrator
from sandbox_platform.facade.workers import WorkerProcess
from sandbox_platform.guards.dry_run import DryRunLock
from sandbox_platform.guards.retry import RetryBackoffManager
from sandbox_platform.procs.beat import BeatSubprocess
from sandbox_platform.procs.env import settings_env

__all__ = [
    "BeatSubprocess",
    "DryRunLock",
    "Governor",
    "IdempotencyManager",
    "RetryBackoffManager",
    "SandboxOrchestrator",
    "WorkerProcess",
    "settings_env",
]
