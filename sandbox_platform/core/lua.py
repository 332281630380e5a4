"""Redis Lua scripts shipped as package data, one file per operation.

Each ``*.lua`` file starts with a header naming its KEYS, ARGV and return value. Files whose
name starts with ``_`` are shared snippets; a script pulls one in with a line::

    -- @include _common.lua

which :meth:`ScriptLibrary.source` replaces by the snippet's text (once per snippet,
recursively). A layer keeps its scripts beside its modules and builds one
:class:`ScriptLibrary` over that folder.

:meth:`ScriptLibrary.get` registers a script once per client (``client.register_script``). The
returned :class:`redis.commands.core.Script` runs ``EVALSHA`` and, on ``NOSCRIPT`` (a restarted
or flushed server), loads the script and retries by itself.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from importlib import resources

import redis
from redis.commands.core import Script

__all__ = ["ScriptLibrary"]

_INCLUDE = re.compile(r"^--\s*@include\s+(\S+)\s*$", re.MULTILINE)
_lock = threading.Lock()


class ScriptLibrary:
    """The Lua scripts of one package folder, by name (file ``{name}.lua``)."""

    def __init__(
        self, package: str, names: Iterable[str], include_from: Iterable[str] = ()
    ) -> None:
        self.package = package
        self.names = tuple(names)
        #: other packages whose ``_*.lua`` snippets ``@include`` may name
        self.include_from = tuple(include_from)
        self._sources: dict[str, str] = {}
        # The scripts of a client live on the client itself: a Script refers back to its
        # client, so a WeakKeyDictionary keyed by client would keep every client alive; an
        # attribute makes a cycle that the garbage collector frees with the client.
        self._attribute = f"_sp_scripts_{package.replace('.', '_')}"

    def _read(self, filename: str) -> str:
        for package in (self.package, *self.include_from):
            path = resources.files(package).joinpath(filename)
            if path.is_file():
                return path.read_text(encoding="utf-8")
        raise FileNotFoundError(f"Lua file {filename!r} not in {self.package} or its includes")

    def _expand(self, text: str, seen: set[str]) -> str:
        def replace(match: re.Match[str]) -> str:
            filename = match.group(1)
            if filename in seen:
                return f"-- (already included: {filename})"
            seen.add(filename)
            return self._expand(self._read(filename), seen)

        return _INCLUDE.sub(replace, text)

    def source(self, name: str) -> str:
        """The source of script ``name`` with its includes expanded."""
        if name not in self.names:
            raise ValueError(f"unknown Lua script {name!r}; known: {', '.join(self.names)}")
        text = self._sources.get(name)
        if text is None:
            text = self._sources[name] = self._expand(self._read(f"{name}.lua"), set())
        return text

    def get(self, client: redis.Redis, name: str) -> Script:
        """Script ``name`` registered on ``client`` (once per client)."""
        scripts: dict[str, Script] | None = getattr(client, self._attribute, None)
        if scripts is None:
            with _lock:
                scripts = client.__dict__.setdefault(self._attribute, {})
        script = scripts.get(name)
        if script is None:
            script = scripts[name] = client.register_script(self.source(name))
        return script

    def sha(self, client: redis.Redis, name: str) -> str:
        """The SHA1 of script ``name``, loaded on ``client``'s server (once, until
        :meth:`forget`): for callers that send ``EVALSHA`` themselves."""
        loaded: set[str] | None = getattr(client, self._attribute + "_loaded", None)
        if loaded is None:
            with _lock:
                loaded = client.__dict__.setdefault(self._attribute + "_loaded", set())
        script = self.get(client, name)
        if name not in loaded:
            client.script_load(script.script)
            loaded.add(name)
        return str(script.sha)

    def forget(self, client: redis.Redis) -> None:
        """The server lost its scripts (``NOSCRIPT``): load them again on next use."""
        loaded: set[str] | None = getattr(client, self._attribute + "_loaded", None)
        if loaded is not None:
            loaded.clear()
