"""``flower``: Celery's monitoring UI (Flower) for the platform's workers, behind basic auth.

A thin wrapper over ``python -m celery -A <app> flower`` run under the supervisor. The
credentials come from ``SANDBOX_PLATFORM_FLOWER_BASIC_AUTH`` and reach Flower through its own
environment variable (``FLOWER_BASIC_AUTH``), never through the command line, where ``ps``
would show them. Without credentials Flower only starts on a loopback address in sandbox
mode (local development); anywhere else the command refuses with exit code 2.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from sandbox_platform.cli.common import (
    AppOption,
    app_module,
    celery_env,
    cli_settings,
    load_app,
    require_extra,
)
from sandbox_platform.core.errors import SettingsError
from sandbox_platform.core.exits import settings_error_exit
from sandbox_platform.core.net import is_loopback
from sandbox_platform.core.settings import ENV_PREFIX, Mode, Settings
from sandbox_platform.procs.supervisor import Supervisor

__all__ = ["AUTH_SETTING", "flower", "flower_auth", "parse_basic_auth"]

#: the platform's variable holding Flower's ``user:password[,user2:password2]``
AUTH_SETTING = f"{ENV_PREFIX}FLOWER_BASIC_AUTH"
#: Flower reads ``--basic-auth`` from this variable (``flower/command.py``, comma-separated)
FLOWER_AUTH_ENV = "FLOWER_BASIC_AUTH"
#: variables the Flower child must not inherit: other credentials, or an open API
DROPPED_ENV = (FLOWER_AUTH_ENV, "FLOWER_UNAUTHENTICATED_API", AUTH_SETTING)
#: Flower options that would put credentials on the command line
AUTH_OPTIONS = ("--basic-auth", "--basic_auth")
FORMAT = "expected user:password[,user2:password2]"


def parse_basic_auth(value: str) -> list[str]:
    """The ``user:password`` pairs of the setting; a one-line :class:`SettingsError` (which
    never repeats a password) when the value is malformed."""
    if not value.strip():
        raise SettingsError(AUTH_SETTING, f"empty; {FORMAT}")
    pairs = value.split(",")
    for number, pair in enumerate(pairs, start=1):
        user, colon, password = pair.partition(":")
        if not colon or not user or not password:
            raise SettingsError(AUTH_SETTING, f"pair {number} is not user:password; {FORMAT}")
        if pair != pair.strip():
            raise SettingsError(AUTH_SETTING, f"pair {number} has spaces around it; {FORMAT}")
    return pairs


def flower_auth(settings: Settings, address: str) -> str | None:
    """Flower's ``FLOWER_BASIC_AUTH`` value, or None where running without auth is allowed.

    Raises :class:`SettingsError` naming the variable when the value is malformed, or when it
    is missing and the address is not loopback or the mode is not sandbox.
    """
    if settings.flower_basic_auth is not None:
        return ",".join(parse_basic_auth(settings.flower_basic_auth))
    if is_loopback(address) and settings.mode is Mode.SANDBOX:
        return None
    raise SettingsError(
        AUTH_SETTING,
        f"not set; Flower on {address!r} in {settings.mode.value} mode needs basic auth "
        f"({FORMAT}); only a loopback address in sandbox mode may run without it",
    )


def flower_env(settings: Settings, auth: str | None) -> dict[str, str]:
    """The Flower child's environment: the credentials under Flower's own name only."""
    env = celery_env(settings)
    for name in DROPPED_ENV:
        env.pop(name, None)
    if auth is not None:
        env[FLOWER_AUTH_ENV] = auth
    return env


def flower(
    ctx: typer.Context,
    app_option: AppOption = None,
    address: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on", min=1, max=65535)] = 5555,
) -> None:
    """Run Flower for the workers (start them with ``sandbox-platform worker --events``).

    Basic auth: SANDBOX_PLATFORM_FLOWER_BASIC_AUTH=user:password[,user2:password2].

    Flower gets it in its environment, never on the command line (where ps shows it).

    Without it Flower starts only on a loopback address in sandbox mode.

    Extra arguments go to Flower.
    """
    require_extra("flower", "Flower")  # else celery's own "no such command" from the child
    settings = cli_settings()
    module = app_module(app_option, settings)
    load_app(module, settings)  # one line and exit 2 here, not Flower's traceback
    if any(arg.split("=", 1)[0] in AUTH_OPTIONS for arg in ctx.args):
        problem = "pass the credentials here, not as --basic-auth (ps shows it)"
        settings_error_exit(SettingsError(AUTH_SETTING, problem))
    try:
        auth = flower_auth(settings, address)
    except SettingsError as error:
        settings_error_exit(error)
    if auth is None:
        print(f"note: Flower on {address} without authentication (sandbox)", file=sys.stderr)
    command = [sys.executable, "-m", "celery", "-A", module, "flower"]
    command += [f"--address={address}", f"--port={port}", *ctx.args]
    raise typer.Exit(Supervisor([command], flower_env(settings, auth)).run())
