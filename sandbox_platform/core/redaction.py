"""Masking of secrets before anything is logged, stored or sent.

By name and by value: a value under a key that names a secret is replaced whole; a string
anywhere has credentials inside URLs, bearer tokens, JWTs, ``key=value`` secrets, known API
key formats (``sk_live_``/``sk_test_``, ``AKIA``/``ASIA``, ``ghp_``/``github_pat_``,
``xoxb-``/``xoxp-``, ...) and Luhn-valid card numbers masked; an integer that is a plausible
card number (13-19 digits, a card network's first digit, Luhn-valid) is masked too. Ids,
counts, timestamps and fencing tokens stay readable.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from sandbox_platform.core.envelope import is_envelope
from sandbox_platform.core.secret_mask import active_mask

__all__ = ["MASK", "is_secret_key", "redact", "redact_value"]

MASK = "***"

_SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)?|secret|token|api[_-]?key|apikey|authori[sz]ation|credential|"
    r"private[_-]?key|cookie|session[_-]?id|card[_-]?number|\bcvv\b|\bcvc\b|\bpan\b",
    re.IGNORECASE,
)
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):[^@/\s]+@"
)
_BEARER = re.compile(r"\b(Bearer|Basic|Token)\s+(?P<value>[A-Za-z0-9._~+/\-]+=*)", re.IGNORECASE)
_INLINE_SECRET = re.compile(
    r"(?P<key>\b[\w\-]*(?:password|passwd|secret|token|api[_-]?key)[\w\-]*\b)"
    r"(?P<sep>\s*[=:]\s*)(?P<quote>['\"]?)(?P<value>[^\s'\",;&]+)",
    re.IGNORECASE,
)
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
#: a UUID (a task id): its first groups can be all digits and pass the Luhn check by chance
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)
_API_KEY = re.compile(
    r"\b(?:[sr]k_(?:live|test)_[A-Za-z0-9]{8,}"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|xox[abposr]-[A-Za-z0-9-]{8,}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
)


# One cheap scan that every string needing a rule matches; most log strings match none.
_MAYBE_SECRET = re.compile(
    r"://\S*@|bearer|basic|token|pass|secret|api[_-]?key|(?:\d[ -]?){12}\d"
    r"|[sr]k_|akia|asia|gh[pousr]_|github_pat|xox|eyj",
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """Whether a mapping key names something secret (``password``, ``api_key``, ...)."""
    return bool(_SECRET_KEY.search(key))


def _luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        number = int(char)
        if index % 2 == 1:
            number *= 2
            if number > 9:
                number -= 9
        total += number
    return total % 10 == 0


def _in_uuid(match: re.Match[str]) -> bool:
    """Whether ``match`` lies inside a UUID of the string it was found in (an id, kept)."""
    return any(
        found.start() <= match.start() and match.end() <= found.end()
        for found in _UUID.finditer(match.string)
    )


def _mask_card(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = re.sub(r"\D", "", text)
    if not 13 <= len(digits) <= 19 or not _luhn_ok(digits) or _in_uuid(match):
        return text
    return f"{MASK}{digits[-4:]}"


def _counter(key: str, value: str) -> bool:
    """A plain number after a word naming a token (``token 7``, ``fencing_token=7``) is a
    counter such as a fencing token, not a credential; passwords and secrets never are."""
    lowered = key.lower()
    return value.isdigit() and "token" in lowered and not _NEVER_COUNTER.search(lowered)


_NEVER_COUNTER = re.compile(r"pass|secret|api|auth|bearer|basic|access|refresh|session|csrf")


def _mask_bearer(match: re.Match[str]) -> str:
    if _counter(match.group(1), match["value"].rstrip("=")):
        return match.group(0)
    return f"{match.group(1)} {MASK}"


def _mask_inline(match: re.Match[str]) -> str:
    if _counter(match["key"], match["value"]):
        return match.group(0)
    return f"{match['key']}{match['sep']}{match['quote']}{MASK}"


def redact_value(text: str) -> str:
    """Mask secrets inside one string (and the running job's secret values)."""
    mask = active_mask()
    if mask is not None:
        text = mask.mask(text)
    if not text or not _MAYBE_SECRET.search(text):
        return text
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _BEARER.sub(_mask_bearer, text)
    text = _INLINE_SECRET.sub(_mask_inline, text)
    text = _API_KEY.sub(MASK, text)
    return _CARD.sub(_mask_card, text)


def _card_int(value: int) -> bool:
    """An integer that is a plausible payment card number (not a timestamp or an id)."""
    digits = str(value)
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and _luhn_ok(digits)


def _masked_item(key: Any, value: Any, depth: int) -> Any:
    """A mapping's value: whole under a secret key, except a number under a key naming a
    token (a fencing token is a counter, not a credential); else redacted by value."""
    if isinstance(key, str) and value is not None and is_secret_key(key):
        number = isinstance(value, int) and not isinstance(value, bool)
        if not (number and "token" in key.lower()):
            return MASK
    return redact(value, depth + 1)


def redact(value: Any, _depth: int = 0) -> Any:
    """Return a copy of ``value`` (mappings, sequences, strings) with secrets masked."""
    if _depth > 20:
        return value
    if isinstance(value, str):
        return redact_value(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _redact_number(value)
    if isinstance(value, Mapping):
        if is_envelope(value):  # a sealed argument: shown as masked, never its ciphertext
            return MASK
        return {k: _masked_item(k, v, _depth) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [redact(v, _depth + 1) for v in value]
        return items if isinstance(value, list) else tuple(items)
    return value


def _redact_number(value: int | float) -> Any:
    """A number that is one of the running job's secret values, or a card number: masked."""
    mask = active_mask()
    if mask is not None and str(value) in mask:
        return MASK
    if isinstance(value, int) and value > 999_999_999_999:
        return f"{MASK}{str(value)[-4:]}" if _card_int(value) else value
    return value
