"""Masking by value: while a job runs, the values of its secret arguments are masked in every
string the redactor sees (:mod:`sandbox_platform.core.redaction`), whatever surrounds them.

The pipeline opens one :class:`SecretMask` per job (:func:`masking`) in the job's context; the
secrets guard adds the values it opens. A value of 6 characters or more is masked wherever it
appears; a shorter one (a CVV, a PIN) only as a whole token, so ``123`` does not mask digits
inside an id such as ``a1234-123b``. Only the job's own context sees its values: another job
on another thread (its own context) does not.

Not covered, by construction: output that does not pass through Python's logging, structlog
or ``print`` in the job's context (a subprocess, C-level writes to file descriptor 1 or 2).
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

__all__ = ["SHORT_VALUE", "SecretMask", "active_mask", "masking", "secret_texts"]

#: values shorter than this are masked only as whole tokens
SHORT_VALUE = 6

_MASK = "***"

_ACTIVE: ContextVar[SecretMask | None] = ContextVar("sp_secret_mask", default=None)


def secret_texts(value: Any) -> set[str]:
    """The texts a secret value can show up as: its strings and numbers, leaf by leaf."""
    found: set[str] = set()
    if isinstance(value, bool) or value is None:
        return found
    if isinstance(value, str | int | float):
        text = str(value)
        if text.strip():
            found.add(text)
    elif isinstance(value, Mapping):
        for item in value.values():
            found |= secret_texts(item)
    elif isinstance(value, list | tuple):
        for item in value:
            found |= secret_texts(item)
    return found


@functools.lru_cache(maxsize=256)
def _token(text: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(text)}(?![A-Za-z0-9])")


class SecretMask:
    """The secret values of one job (mutable: the guard adds what it opens)."""

    __slots__ = ("_texts",)

    def __init__(self) -> None:
        self._texts: tuple[str, ...] = ()  # longest first: a value inside another is masked last

    def add(self, value: Any) -> None:
        texts = secret_texts(value) - set(self._texts)
        if texts:
            self._texts = tuple(sorted({*self._texts, *texts}, key=len, reverse=True))

    def __bool__(self) -> bool:
        return bool(self._texts)

    def __contains__(self, text: object) -> bool:
        return text in self._texts

    def mask(self, text: str) -> str:
        """``text`` with the values masked (a substring test first: most lines hold none)."""
        for value in self._texts:
            if value in text:
                if len(value) >= SHORT_VALUE:
                    text = text.replace(value, _MASK)
                else:
                    text = _token(value).sub(_MASK, text)
        return text


def active_mask() -> SecretMask | None:
    """The running job's mask, when it has secret values."""
    mask = _ACTIVE.get()
    return mask if mask else None


@contextlib.contextmanager
def masking(mask: SecretMask) -> Iterator[SecretMask]:
    """``mask`` applies to every line written in this context until the block ends."""
    token = _ACTIVE.set(mask)
    try:
        yield mask
    finally:
        _ACTIVE.reset(token)
