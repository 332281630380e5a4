"""Redis Lua scripts, shipped as package data: one file per operation.

Each ``*.lua`` file starts with a header naming its KEYS, ARGV and return value. Files whose
name starts with ``_`` are shared snippets; a script pulls one in with a line::

    -- @include _common.lua

which :func:`load_script` replaces by the snippet's text (once per snippet, recursively).

:func:`get_script` registers a script once per client (``client.register_script``). The
returned :class:`redis.commands.core.Script` runs ``EVALSHA`` and, on ``NOSCRIPT`` (a restarted
or flushed server), loads the script and retries by itself.
"""

from __future__ import annotations

import re
import threading
from functools import cache
from importlib import resources

import redis
from redis.commands.core import Script

__all__ = ["SCRIPT_NAMES", "get_script", "load_script"]

SCRIPT_NAMES = (
    "admit",
    "governor_acquire",
    "idem_claim",
    "idem_complete",
    "idem_extend",
    "idem_release",
    "poison_count",
)

_INCLUDE = re.compile(r"^--\s*@include\s+(\S+)\s*$", re.MULTILINE)
_lock = threading.Lock()
# The scripts of a client live on the client itself: a Script refers back to its client, so a
# WeakKeyDictionary keyed by client would keep every client alive; an attribute makes a cycle
# that the garbage collector frees with the client.
_ATTRIBUTE = "_sandbox_platform_scripts"


def _read(filename: str) -> str:
    return resources.files(__package__).joinpath(filename).read_text(encoding="utf-8")


def _expand(text: str, seen: set[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        filename = match.group(1)
        if filename in seen:
            return f"-- (already included: {filename})"
        seen.add(filename)
        return _expand(_read(filename), seen)

    return _INCLUDE.sub(replace, text)


@cache
def load_script(name: str) -> str:
    """The source of script ``name`` (file ``{name}.lua``) with its includes expanded."""
    if name not in SCRIPT_NAMES:
        raise ValueError(f"unknown Lua script {name!r}; known: {', '.join(SCRIPT_NAMES)}")
    return _expand(_read(f"{name}.lua"), set())


def get_script(client: redis.Redis, name: str) -> Script:
    """Script ``name`` registered on ``client`` (once per client; NOSCRIPT handled by redis-py)."""
    scripts: dict[str, Script] | None = getattr(client, _ATTRIBUTE, None)
    if scripts is None:
        with _lock:
            scripts = client.__dict__.setdefault(_ATTRIBUTE, {})
    script = scripts.get(name)
    if script is None:
        script = scripts[name] = client.register_script(load_script(name))
    return script
