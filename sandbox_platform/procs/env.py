"""The environment of a child process started for given settings."""

from __future__ import annotations

import os

from sandbox_platform.core.redis_client import redis_url
from sandbox_platform.core.settings import ENV_PREFIX, Mode, Settings

__all__ = ["settings_env"]


def settings_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """A child-process environment carrying ``settings`` as ``SANDBOX_PLATFORM_*`` variables.

    Starts from ``base`` (default: this process's environment) without any
    ``SANDBOX_PLATFORM_*`` variable, then sets one per setting that has a value. The Redis URL
    is always the resolved one, so a child finds the embedded server instead of starting one.
    """
    source = dict(os.environ if base is None else base)
    env = {k: v for k, v in source.items() if not k.startswith(ENV_PREFIX)}
    for name, value in settings:
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, Mode):
            text = value.value
        else:
            text = str(value)
        env[f"{ENV_PREFIX}{name.upper()}"] = text
    env[f"{ENV_PREFIX}REDIS_URL"] = redis_url(settings)
    return env
