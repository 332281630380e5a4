"""The package's version, read from its installed metadata: ``pyproject.toml`` states it and
nothing else does (``sandbox_platform.__version__`` and ``sandbox-platform --version`` read it
here)."""

from __future__ import annotations

from importlib import metadata

__all__ = ["DISTRIBUTION", "installed_version"]

#: the distribution's name on PyPI
DISTRIBUTION = "sandbox-platform"


def installed_version() -> str:
    """The installed distribution's version (PEP 440); ``0+unknown`` for sources put on the
    path without an install (no metadata to read)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"
