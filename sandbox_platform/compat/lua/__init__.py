"""The operations layer's Redis Lua scripts (package data), one file per operation."""

from __future__ import annotations

import redis
from redis.commands.core import Script

from sandbox_platform.core.lua import ScriptLibrary

__all__ = ["SCRIPT_NAMES", "get_script"]

SCRIPT_NAMES = ("migrate_queue",)

_LIBRARY = ScriptLibrary(__name__, SCRIPT_NAMES)


def get_script(client: redis.Redis, name: str) -> Script:
    return _LIBRARY.get(client, name)
