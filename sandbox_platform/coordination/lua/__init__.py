"""The guards' Redis Lua scripts (package data), one file per operation.

See :class:`sandbox_platform.core.lua.ScriptLibrary` for the file format and ``@include``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from sandbox_platform.core.lua import ScriptLibrary

__all__ = ["SCRIPT_NAMES", "get_script", "load_script", "run_script"]

SCRIPT_NAMES = (
    "admit",
    "enq_dedupe",
    "enq_forget",
    "governor_acquire",
    "governor_clear",
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


def run_script(
    client: redis.Redis, name: str, keys: Sequence[str], args: Sequence[str | int | float]
) -> Any:
    """``EVALSHA`` of script ``name``: the hot path's call, without redis-py's ``Script``
    wrapper; on ``NOSCRIPT`` (a restarted or flushed server) the script is loaded again."""
    shas: dict[str, str] | None = client.__dict__.get(_SHAS)
    sha = shas.get(name) if shas is not None else None
    if sha is None:
        sha = client.__dict__.setdefault(_SHAS, {})[name] = _LIBRARY.sha(client, name)
    try:
        return client.evalsha(sha, len(keys), *keys, *args)
    except NoScriptError:
        _LIBRARY.forget(client)
        client.__dict__.pop(_SHAS, None)
        return client.evalsha(_LIBRARY.sha(client, name), len(keys), *keys, *args)


#: the client attribute holding the SHAs run_script has loaded on its server
_SHAS = "_sp_guard_shas"
