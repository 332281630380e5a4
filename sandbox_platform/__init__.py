"""sandbox-platform: Celery with safety rails.

The public API is what ``__all__`` lists; everything else is internal.
"""

from sandbox_platform.celery_app import create_app
from sandbox_platform.context import (
    bind_correlation_id,
    current_correlation_id,
    new_correlation_id,
)
from sandbox_platform.errors import (
    CountdownTooLongError,
    DryRunError,
    EnqueueError,
    GovernorUnavailable,
    GuardError,
    IdempotencyConflict,
    IdempotencyInFlight,
    IsolationError,
    ModeMismatchError,
    PayloadError,
    PlatformError,
    RateLimitedError,
    RetryExhausted,
    SettingsError,
    UnknownTaskError,
)
from sandbox_platform.logging import configure_logging
from sandbox_platform.settings import Mode, Settings, load_settings

__version__ = "0.1.0"

__all__ = [
    "CountdownTooLongError",
    "DryRunError",
    "EnqueueError",
    "GovernorUnavailable",
    "GuardError",
    "IdempotencyConflict",
    "IdempotencyInFlight",
    "IsolationError",
    "Mode",
    "ModeMismatchError",
    "PayloadError",
    "PlatformError",
    "RateLimitedError",
    "RetryExhausted",
    "Settings",
    "SettingsError",
    "UnknownTaskError",
    "__version__",
    "bind_correlation_id",
    "configure_logging",
    "create_app",
    "current_correlation_id",
    "load_settings",
    "new_correlation_id",
]
