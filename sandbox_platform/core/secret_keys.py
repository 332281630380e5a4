"""The keys that seal secret arguments: a key ring (``SANDBOX_PLATFORM_SECRET_KEYS``) and a
fingerprint key (``SANDBOX_PLATFORM_SECRET_FINGERPRINT_KEY``).

``SECRET_KEYS`` is a comma-separated list of ``<key id>:<key>``, the key 32 random bytes in
URL-safe base64 (``sandbox-platform secrets new-key`` prints one). The first key seals; every
key opens, so keys rotate: put the new key first, keep the old one until nothing sealed under
it is left (``sandbox-platform secrets reencrypt`` moves stored dead letters to the first key).

The fingerprint key is what the idempotency fingerprint of a secret argument is an HMAC with.
It never rotates with the key ring: the same idempotency key and arguments dedupe across a
rotation.

In sandbox mode, with no key set, :func:`sandbox_keys` generates both into the data directory
(a ``0600`` file, one machine's sandbox only) and says so once. Which keys an app's settings
give: :func:`sandbox_platform.core.secret_config.secret_keys_for`.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from sandbox_platform.core.errors import SettingsError

__all__ = [
    "FINGERPRINT_KEY_SETTING",
    "KEY_BYTES",
    "SECRET_KEYS_SETTING",
    "KeyRing",
    "check_fingerprint_key",
    "check_key_ring",
    "new_fingerprint_key",
    "new_key",
    "parse_fingerprint_key",
    "parse_key_ring",
    "sandbox_keys",
]

log = structlog.get_logger(__name__)

SECRET_KEYS_SETTING = "SANDBOX_PLATFORM_SECRET_KEYS"  # noqa: S105  (a variable's name)
FINGERPRINT_KEY_SETTING = "SANDBOX_PLATFORM_SECRET_FINGERPRINT_KEY"

#: AES-256-GCM
KEY_BYTES = 32
_KEY_ID = re.compile(r"[A-Za-z0-9_.\-]{1,40}")
_SANDBOX_FILE = "secret-keys"


@dataclass(frozen=True)
class KeyRing:
    """Keys by id, in order: the first seals, all open."""

    keys: tuple[tuple[str, bytes], ...]

    @property
    def current_id(self) -> str:
        return self.keys[0][0]

    @property
    def current(self) -> bytes:
        return self.keys[0][1]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(key_id for key_id, _ in self.keys)

    def get(self, key_id: str) -> bytes | None:
        for known, key in self.keys:
            if known == key_id:
                return key
        return None

    def __repr__(self) -> str:  # never the key bytes
        return f"KeyRing(ids={list(self.ids)})"


def _decode(text: str, what: str, setting: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise SettingsError(setting, f"{what} is not URL-safe base64") from None


def parse_key_ring(text: str, setting: str = SECRET_KEYS_SETTING) -> KeyRing:
    """``"<id>:<key>,<id>:<key>"`` as a key ring, or a one-line SettingsError (never the key)."""
    keys: list[tuple[str, bytes]] = []
    for position, item in enumerate(part.strip() for part in text.split(",")):
        where = f"key {position + 1}"
        key_id, sep, encoded = item.partition(":")
        if not sep or not _KEY_ID.fullmatch(key_id):
            raise SettingsError(
                setting,
                f"{where} must be <key id>:<base64 key> with an id of letters, digits, "
                "'_', '.' or '-' (sandbox-platform secrets new-key prints one)",
            )
        key = _decode(encoded.strip(), f"{where} ({key_id})", setting)
        if len(key) != KEY_BYTES:
            raise SettingsError(
                setting, f"{where} ({key_id}) is {len(key)} bytes; a key is {KEY_BYTES} bytes"
            )
        if any(known == key_id for known, _ in keys):
            raise SettingsError(setting, f"key id {key_id!r} is given twice")
        keys.append((key_id, key))
    return KeyRing(tuple(keys))


def parse_fingerprint_key(text: str, setting: str = FINGERPRINT_KEY_SETTING) -> bytes:
    """The fingerprint key's bytes (at least 32), or a one-line SettingsError."""
    key = _decode(text.strip(), "the fingerprint key", setting)
    if len(key) < KEY_BYTES:
        raise SettingsError(setting, f"the fingerprint key is {len(key)} bytes; at least 32")
    return key


def check_fingerprint_key(text: str) -> str:
    """``text`` if it is a valid fingerprint key (a settings validator)."""
    parse_fingerprint_key(text)
    return text


def check_key_ring(text: str) -> str:
    """``text`` if it is a valid key ring (a settings validator)."""
    parse_key_ring(text)
    return text


def _encode(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def new_key(key_id: str | None = None) -> str:
    """A new ``<id>:<key>`` entry for ``SECRET_KEYS`` (the id: the date and 4 random hex)."""
    key_id = key_id or f"k{time.strftime('%Y%m%d')}{secrets.token_hex(2)}"
    if not _KEY_ID.fullmatch(key_id):
        raise ValueError(f"not a key id: {key_id!r} (letters, digits, '_', '.', '-'; 1-40)")
    return f"{key_id}:{_encode(secrets.token_bytes(KEY_BYTES))}"


def new_fingerprint_key() -> str:
    return _encode(secrets.token_bytes(KEY_BYTES))


def _read_sandbox_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep:
            values[name.strip()] = value.strip()
    return values


def sandbox_keys(data_dir: Path) -> tuple[KeyRing, bytes]:
    """The sandbox's generated key ring and fingerprint key, created on first use (``0600``,
    written whole or not at all: two processes starting at once read the same keys)."""
    path = data_dir / _SANDBOX_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        body = f"SECRET_KEYS={new_key('sandbox')}\nFINGERPRINT_KEY={new_fingerprint_key()}\n"
        temporary = path.with_name(f".{_SANDBOX_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, body.encode())
        finally:
            os.close(fd)
        try:
            os.link(temporary, path)  # fails when another process was first: theirs stands
            log.warning(
                "no secret keys are set: generated a sandbox key into the data directory "
                f"(this machine's sandbox only; set {SECRET_KEYS_SETTING} and "
                f"{FINGERPRINT_KEY_SETTING} for live mode or several machines)",
                path=str(path),
            )
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    values = _read_sandbox_file(path)
    where = str(path)
    return (
        parse_key_ring(values.get("SECRET_KEYS", ""), where),
        parse_fingerprint_key(values.get("FINGERPRINT_KEY", ""), where),
    )
