"""The guards' Redis Lua scripts (package data), one file per operation.

See :class:`sandbox_platform.core.lua.ScriptLibrary` for the file format and ``@include``.
"""

from __future__ import annotations

import redis
from redis.commands.core import Script

from sandbox_platform.core.lua import ScriptLibrary

__all__ = ["SCRIPT_NAMES", "get_script", "load_script"]

SCRIPT_NAMES = (
    "admit",
    "governor_acquire",
    "governor_peek",
    "idem_claim",
    "idem_complete",
    "idem_extend",
    "idem_release",
    "poison_count",
)

_LIBRARY = ScriptLibrary(__name__, SCRIPT_NAMES)


def load_script(name: str) -> str:
    """The source of script ``name`` (file ``{name}.lua``) with its includes expanded."""
    return _LIBRARY.source(name)


def get_script(client: redis.Redis, name: str) -> Script:
    """Script ``name`` registered on ``client`` (once per client; NOSCRIPT handled by redis-py)."""
    return _LIBRARY.get(client, name)
