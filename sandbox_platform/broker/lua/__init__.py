"""The transport's Redis Lua scripts (package data): ``fetch``, ``ack`` and ``publish_once``."""

from __future__ import annotations

from sandbox_platform.core.lua import ScriptLibrary

__all__ = ["TRANSPORT_SCRIPTS"]

#: fetch.lua includes the guards' admission snippets (admission folded into the fetch)
TRANSPORT_SCRIPTS = ScriptLibrary(
    __name__, ("fetch", "ack", "publish_once"), include_from=["sandbox_platform.coordination.lua"]
)
