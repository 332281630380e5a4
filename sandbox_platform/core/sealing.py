"""Sealed values: one secret argument encrypted with AES-256-GCM into a small JSON envelope.

::

    {"$sp_secret": 1, "kid": "k20261207ab12", "ct": "<base64url of nonce + ciphertext>"}

The plaintext is the value's JSON text (any JSON value can be secret). The associated data
binds the task's name and the argument's name, not the task id: a replay or a retry publishes
the same envelope under a new id. An envelope opened under another task or argument, under a
key the ring does not hold, or with one byte changed raises :class:`SecretUndecryptable`,
which names the key id.

The fingerprint of a secret value (what the idempotency fingerprint uses in its place) is an
HMAC-SHA256 over the same plaintext with the fingerprint key, so it is the same under any
sealing key.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sandbox_platform.core.envelope import (
    ENVELOPE_MARK,
    ENVELOPE_VERSION,
    envelope_key_id,
    is_envelope,
)
from sandbox_platform.core.errors import PlatformError
from sandbox_platform.core.secret_keys import KeyRing

__all__ = [
    "ENVELOPE_MARK",
    "SecretUndecryptable",
    "envelope_key_id",
    "is_envelope",
    "open_value",
    "seal_value",
    "secret_fingerprint",
]

_VERSION = ENVELOPE_VERSION
_NONCE_BYTES = 12
_FINGERPRINT_MARK = "$sp_secret_hmac"


class SecretUndecryptable(PlatformError):
    """A sealed argument cannot be opened: an unknown key id, or bytes that do not verify."""

    def __init__(self, task: str, argument: str, key_id: str, why: str) -> None:
        self.key_id = key_id
        self.argument = argument
        super().__init__(
            f"{task}: secret argument {argument!r} cannot be decrypted ({why}; key id {key_id!r})"
        )


def _associated(task: str, argument: str) -> bytes:
    return f"sp-secret:v{_VERSION}\x00{task}\x00{argument}".encode()


_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


def _plaintext(value: Any) -> bytes:
    return _ENCODER.encode(value).encode()


@functools.lru_cache(maxsize=32)
def _cipher(key: bytes) -> AESGCM:
    return AESGCM(key)


def seal_value(ring: KeyRing, task: str, argument: str, value: Any) -> dict[str, Any]:
    """``value`` sealed under the ring's current key (TypeError if it is not JSON)."""
    nonce = os.urandom(_NONCE_BYTES)
    sealed = _cipher(ring.current).encrypt(nonce, _plaintext(value), _associated(task, argument))
    text = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
    return {ENVELOPE_MARK: _VERSION, "kid": ring.current_id, "ct": text}


def open_value(ring: KeyRing, task: str, argument: str, envelope: Mapping[str, Any]) -> Any:
    """The value sealed in ``envelope``, or :class:`SecretUndecryptable`."""
    key_id = str(envelope.get("kid") or "")
    key = ring.get(key_id)
    if key is None:
        raise SecretUndecryptable(task, argument, key_id, "no configured key has this id")
    text = envelope.get("ct")
    try:
        raw = base64.urlsafe_b64decode(str(text) + "=" * (-len(str(text)) % 4))
        nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        plain = _cipher(key).decrypt(nonce, sealed, _associated(task, argument))
        return json.loads(plain)
    except (InvalidTag, binascii.Error, ValueError) as exc:
        why = "the ciphertext does not verify" if isinstance(exc, InvalidTag) else "malformed"
        raise SecretUndecryptable(task, argument, key_id, why) from None


def secret_fingerprint(key: bytes, task: str, argument: str, value: Any) -> dict[str, str]:
    """What stands for a secret value in the idempotency fingerprint."""
    message = _associated(task, argument) + b"\x00" + _plaintext(value)
    digest = hmac.new(key, message, hashlib.sha256)
    return {_FINGERPRINT_MARK: digest.hexdigest()}
