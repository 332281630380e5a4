"""The keys an app's settings give its secret arguments (core/secret_keys.py: their formats)."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox_platform.core.errors import SettingsError
from sandbox_platform.core.secret_keys import (
    FINGERPRINT_KEY_SETTING,
    SECRET_KEYS_SETTING,
    KeyRing,
    parse_fingerprint_key,
    parse_key_ring,
    sandbox_keys,
)
from sandbox_platform.core.settings import Mode, Settings

__all__ = ["SecretKeys", "secret_keys_for"]


@dataclass(frozen=True)
class SecretKeys:
    """What seals and fingerprints an app's secret arguments."""

    ring: KeyRing
    fingerprint_key: bytes

    def __repr__(self) -> str:
        return f"SecretKeys({self.ring!r})"


def secret_keys_for(settings: Settings) -> SecretKeys:
    """The keys of an app's settings. Live mode: both settings, or a SettingsError naming the
    missing one. Sandbox mode: what is set, the rest generated into the data directory."""
    ring = parse_key_ring(settings.secret_keys) if settings.secret_keys else None
    fingerprint = settings.secret_fingerprint_key
    fingerprint_key = parse_fingerprint_key(fingerprint) if fingerprint else None
    if ring is not None and fingerprint_key is not None:
        return SecretKeys(ring, fingerprint_key)
    if settings.mode is Mode.LIVE:
        missing = SECRET_KEYS_SETTING if ring is None else FINGERPRINT_KEY_SETTING
        raise SettingsError(
            missing,
            "a task has secret arguments and live mode needs this key "
            "(sandbox-platform secrets new-key prints one)",
        )
    generated_ring, generated_fingerprint = sandbox_keys(settings.data_dir)
    return SecretKeys(ring or generated_ring, fingerprint_key or generated_fingerprint)
