"""Unit-testing a guard, at the import path the docs use::

    from sandbox_platform.testing import GuardHarness, run_concurrently

A re-export only: see :mod:`sandbox_platform.guards.testing`.
"""

from sandbox_platform.guards.testing import (
    Admitted,
    FakeTask,
    GuardHarness,
    MemoryRecorder,
    default_redis_url,
    run_concurrently,
)

__all__ = [
    "Admitted",
    "FakeTask",
    "GuardHarness",
    "MemoryRecorder",
    "default_redis_url",
    "run_concurrently",
]
