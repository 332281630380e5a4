"""``secrets new-key`` and ``secrets reencrypt``: the keys that seal secret task arguments.

Rotation: put a new key first in ``SANDBOX_PLATFORM_SECRET_KEYS`` (``new,old``), restart,
run ``secrets reencrypt`` for the stored dead letters, and drop the old key once readiness
(check ``secret_keys``) no longer names it. No command prints key material but ``new-key``,
whose whole output is the new key.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from sandbox_platform.cli.common import AppOption, app_module, cli_settings, load_app
from sandbox_platform.cli.render import (
    EXIT_USAGE,
    audit_action,
    fail,
    print_json,
    reading_database,
)

if TYPE_CHECKING:
    from sandbox_platform.ops.secret_reencrypt import Reencrypted

__all__ = ["secrets_app"]

secrets_app = typer.Typer(
    no_args_is_help=True, help="Keys that seal secret task arguments: new keys, rotation."
)


@secrets_app.command("new-key")
def new_key_command(
    key_id: Annotated[
        str | None,
        typer.Option(
            "--id", help="the key id (letters, digits, '_', '.', '-'; default: k<date><hex>)"
        ),
    ] = None,
    fingerprint: Annotated[
        bool,
        typer.Option(
            "--fingerprint",
            help="a fingerprint key (SANDBOX_PLATFORM_SECRET_FINGERPRINT_KEY) instead",
        ),
    ] = False,
) -> None:
    """Print a new key on stdout (only the value), what to do with it on stderr."""
    from sandbox_platform.core.secret_keys import (
        FINGERPRINT_KEY_SETTING,
        SECRET_KEYS_SETTING,
        new_fingerprint_key,
        new_key,
    )

    if fingerprint:
        if key_id is not None:
            fail("--id does not apply to --fingerprint (a fingerprint key has no id)", EXIT_USAGE)
        print(new_fingerprint_key(), flush=True)
        print(
            f"set it as {FINGERPRINT_KEY_SETTING}, once: it never rotates "
            "(the same arguments dedupe across key rotations)",
            file=sys.stderr,
        )
        return
    try:
        entry = new_key(key_id)
    except ValueError as error:
        fail(str(error), EXIT_USAGE)
    print(entry, flush=True)
    print(
        f"put it first in {SECRET_KEYS_SETTING} (new,old...): the first key seals, every key "
        "opens; then `sandbox-platform secrets reencrypt`",
        file=sys.stderr,
    )


@secrets_app.command("reencrypt")
def reencrypt_command(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="count what would move, change nothing")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    app_option: AppOption = None,
) -> None:
    """Seal the stored dead letters' secret arguments again under the current key.

    Exit 1 when an envelope cannot be opened (its key id is not configured, or its bytes do
    not verify): those are listed; every other one is moved all the same.
    """
    from sandbox_platform.core.errors import SettingsError
    from sandbox_platform.core.exits import settings_error_exit
    from sandbox_platform.core.secret_config import secret_keys_for
    from sandbox_platform.ops.secret_reencrypt import app_argnames, reencrypt_dead_letters

    settings = cli_settings()
    try:
        ring = secret_keys_for(settings).ring
    except SettingsError as error:
        settings_error_exit(error)
    app = load_app(app_module(app_option, settings), settings)
    url = settings.active_database_url
    with reading_database(url):
        result = reencrypt_dead_letters(url, ring, app_argnames(app), dry_run=dry_run)
    if result.rows and not dry_run:
        detail = {"rows": result.rows, "envelopes": result.envelopes, "key_id": ring.current_id}
        audit_action(url, "secrets.reencrypt", "sp_dead_letters", detail)
    if as_json:
        print_json(result.to_dict())
    else:
        _print_result(result)
    raise typer.Exit(1 if result.undecryptable else 0)


def _print_result(result: Reencrypted) -> None:
    verb = "would re-encrypt" if result.dry_run else "re-encrypted"
    print(
        f"{verb} {result.envelopes} envelope(s) in {result.rows} dead letter(s) under key "
        f"{result.current_key_id!r} ({result.scanned} dead letter(s) with envelopes read)"
    )
    for item in result.undecryptable:
        print(
            f"dead letter {item.dead_letter_id}: key id {item.key_id!r}, argument "
            f"{item.argument!r} of {item.task}: cannot be opened ({item.why})"
        )
    if result.undecryptable:
        print(
            f"sandbox-platform: {len(result.undecryptable)} envelope(s) cannot be opened; "
            "add their key back to SANDBOX_PLATFORM_SECRET_KEYS and run this again",
            file=sys.stderr,
        )
