"""Default governor limits declared in code, at the import path the README documents.

A re-export only: see :mod:`sandbox_platform.ops.limits`.
"""

from sandbox_platform.ops.limits import LimitSpec, apply_default_limits, declare_default_limits

__all__ = ["LimitSpec", "apply_default_limits", "declare_default_limits"]
