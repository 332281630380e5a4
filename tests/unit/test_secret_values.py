"""Keys, envelopes and masking by value (pure units; the end to end test is
tests/reliability/test_secret_arguments.py)."""

from __future__ import annotations

import pytest

from sandbox_platform.core.errors import SettingsError
from sandbox_platform.core.redaction import redact, redact_value
from sandbox_platform.core.sealing import SecretUndecryptable, open_value, seal_value
from sandbox_platform.core.secret_keys import new_key, parse_key_ring
from sandbox_platform.core.secret_mask import SecretMask, active_mask, masking
from sandbox_platform.core.settings import load_settings

KEY = new_key("k1")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("nokey", "must be <key id>:<base64 key>"),
        ("k1:not base64!", "not URL-safe base64"),
        ("k1:" + "A" * 22, "is 16 bytes; a key is 32 bytes"),
        (f"{KEY},{KEY}", "key id 'k1' is given twice"),
        ("bad id:" + KEY.split(":")[1], "must be <key id>"),
    ],
)
def test_a_malformed_key_ring_is_one_line_naming_the_variable_never_the_key(
    value: str, problem: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(secret_keys=value)
    message = str(caught.value)
    assert message.startswith("SANDBOX_PLATFORM_SECRET_KEYS: ") and problem in message
    assert "\n" not in message and KEY.split(":")[1] not in message


def test_a_short_fingerprint_key_is_refused() -> None:
    with pytest.raises(SettingsError, match="SECRET_FINGERPRINT_KEY: the fingerprint key is 3"):
        load_settings(secret_fingerprint_key="AAAA")


def test_key_settings_are_masked_wherever_settings_are_shown() -> None:
    shown = load_settings(secret_keys=KEY, secret_fingerprint_key="A" * 43).public_dict()
    assert shown["secret_keys"] == "***" and shown["secret_fingerprint_key"] == "***"


def test_an_envelope_opens_under_its_task_and_argument_only() -> None:
    ring = parse_key_ring(KEY)
    sealed = seal_value(ring, "t.pay", "card", {"pan": "4111", "exp": [12, 30]})
    assert open_value(ring, "t.pay", "card", sealed) == {"pan": "4111", "exp": [12, 30]}
    for task, argument in (("t.other", "card"), ("t.pay", "cvv")):
        with pytest.raises(SecretUndecryptable, match="does not verify; key id 'k1'"):
            open_value(ring, task, argument, sealed)


def test_the_ring_seals_with_its_first_key_and_opens_with_any() -> None:
    old, new = parse_key_ring(KEY), parse_key_ring(f"{new_key('k2')},{KEY}")
    sealed_old = seal_value(old, "t", "a", "v")
    assert seal_value(new, "t", "a", "v")["kid"] == "k2"
    assert open_value(new, "t", "a", sealed_old) == "v"


def test_long_values_are_masked_anywhere_short_ones_as_whole_tokens() -> None:
    mask = SecretMask()
    mask.add({"password": "hunter2-horse", "cvv": 123, "flag": True})
    assert mask.mask("x=hunter2-horse;") == "x=***;"
    assert mask.mask("cvv 123, id a1234-123b 91230") == "cvv ***, id a1234-123b 91230"
    assert mask.mask("True") == "True"  # booleans are never secret values


def test_masking_applies_in_its_context_only() -> None:
    mask = SecretMask()
    mask.add("s3cr3t-value")
    assert active_mask() is None
    with masking(mask):
        assert redact_value("it is s3cr3t-value") == "it is ***"
        assert redact(["s3cr3t-value", 5]) == ["***", 5]
    assert redact_value("it is s3cr3t-value") == "it is s3cr3t-value"
