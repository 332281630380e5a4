"""sandbox-platform: Celery with safety rails.

The public API is what ``__all__`` lists; everything else is internal.
"""

from sandbox_platform.app.factory import create_app
from sandbox_platform.app.tasks import (
    enqueue,
    enqueue_async,
    enqueue_many,
    enqueue_many_async,
    guarded_task,
)
from sandbox_platform.coordination.governor import Governor
from sandbox_platform.coordination.idempotency import record_effect
from sandbox_platform.core.context import (
    bind_correlation_id,
    current_correlation_id,
    new_correlation_id,
)
from sandbox_platform.core.errors import (
    CountdownTooLongError,
    DryRunError,
    EnqueueError,
    GovernorUnavailable,
    GuardError,
    IdempotencyConflict,
    IdempotencyInFlight,
    InvalidDelayError,
    IsolationError,
    ModeMismatchError,
    PayloadError,
    PlatformError,
    RateLimitedError,
    RetryExhausted,
    SandboxEgressBlocked,
    SettingsError,
    SimulationError,
    UnknownTaskError,
)
from sandbox_platform.core.logging import configure_logging
from sandbox_platform.core.settings import Mode, Settings, load_settings
from sandbox_platform.core.version import installed_version as _installed_version
from sandbox_platform.db.session import platform_session, register_app_metadata
from sandbox_platform.guards.base import Guard, Job, Option, Outcome
from sandbox_platform.guards.dry_run import irreversible
from sandbox_platform.guards.retry import Jitter, RetryPolicy
from sandbox_platform.guards.shortcuts import EnqueueShortcuts
from sandbox_platform.ops.limits import declare_default_limits

__version__ = _installed_version()  # the package metadata's: pyproject.toml alone states it
"""The installed sandbox-platform's version (PEP 440), the one pip and the CHANGELOG name."""

__all__ = [
    "CountdownTooLongError",
    "DryRunError",
    "EnqueueError",
    "EnqueueShortcuts",
    "Governor",
    "GovernorUnavailable",
    "Guard",
    "GuardError",
    "IdempotencyConflict",
    "IdempotencyInFlight",
    "InvalidDelayError",
    "IsolationError",
    "Jitter",
    "Job",
    "Mode",
    "ModeMismatchError",
    "Option",
    "Outcome",
    "PayloadError",
    "PlatformError",
    "RateLimitedError",
    "RetryExhausted",
    "RetryPolicy",
    "SandboxEgressBlocked",
    "Settings",
    "SettingsError",
    "SimulationError",
    "UnknownTaskError",
    "__version__",
    "bind_correlation_id",
    "configure_logging",
    "create_app",
    "current_correlation_id",
    "declare_default_limits",
    "enqueue",
    "enqueue_async",
    "enqueue_many",
    "enqueue_many_async",
    "guarded_task",
    "irreversible",
    "load_settings",
    "new_correlation_id",
    "platform_session",
    "record_effect",
    "register_app_metadata",
]
