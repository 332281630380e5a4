"""The run-record outbox's Redis Lua scripts (package data): ``outbox_trim``, ``outbox_release``."""

from __future__ import annotations

from sandbox_platform.core.lua import ScriptLibrary

__all__ = ["OUTBOX_SCRIPTS"]

OUTBOX_SCRIPTS = ScriptLibrary(__name__, ("outbox_trim", "outbox_release"))
