"""Reading what an earlier release left behind, each part with the release that removes it.

- :mod:`~sandbox_platform.compat.legacy_queues`: jobs a 0.1 deployment left on unqualified
  queues, moved to the mode-qualified ones (``sandbox-platform queues migrate``). Removed in
  :data:`LEGACY_QUEUES_REMOVED_IN`.

The 0.1 governor counters are read by the governor's own Lua
(``coordination/lua/governor_peek.lua``: a state hash of 0.1 lacks the config copy) until the
same release.
"""

from __future__ import annotations

__all__ = ["LEGACY_QUEUES_REMOVED_IN"]

#: the release that drops the 0.1 readers (queues migrate, 0.1 governor counters)
LEGACY_QUEUES_REMOVED_IN = "0.4"
