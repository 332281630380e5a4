"""Searching captured text for secret values in the forms they could leak in: plain,
JSON-escaped, hex and base64 (at each of the three byte alignments inside a longer base64
text). A value shorter than 6 characters is searched as a whole token only (a CVV's digits
inside a timestamp or an id are not a leak)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from typing import Any

import redis

__all__ = ["dump_redis", "forms", "leaks", "record_pages"]


def _base64_cores(raw: bytes) -> set[str]:
    """The base64 of ``raw`` whatever its offset in a longer text: the stable middle."""
    cores = set()
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * offset + raw).decode()
            start = 4 * ((offset + 2) // 3)
            core = text[start:-4]
            if len(core) >= 8:
                cores.add(core.rstrip("="))
    return cores


def forms(secret: str) -> set[str]:
    """The texts ``secret`` would show up as if it leaked."""
    raw = secret.encode()
    found = {secret, json.dumps(secret)[1:-1], raw.hex(), raw.hex().upper()}
    found |= _base64_cores(raw)
    return {form for form in found if form}


def leaks(text: str, secrets: Iterable[str]) -> list[str]:
    """Each secret (by its plain value) found in ``text`` in any of its forms."""
    found = []
    for secret in secrets:
        if len(secret) < 6:
            if re.search(rf"(?<![\w.:\-]){re.escape(secret)}(?![\w.:\-])", text):
                found.append(secret)
        elif any(form in text for form in forms(secret)):
            found.append(secret)
    return found


def _value(client: redis.Redis, key: bytes) -> Any:
    kind = client.type(key).decode()
    if kind == "string":
        return client.get(key)
    if kind == "list":
        return client.lrange(key, 0, -1)
    if kind == "hash":
        return client.hgetall(key)
    if kind == "set":
        return client.smembers(key)
    if kind == "zset":
        return client.zrange(key, 0, -1, withscores=True)
    if kind == "stream":
        return client.xrange(key)
    return None


def _decoded(value: Any) -> str:
    """Bytes as text; a kombu message's base64 body decoded as well."""
    text = repr(value)
    for match in re.finditer(r'"body": "([A-Za-z0-9+/=]{16,})"', text):
        text += "\n" + base64.b64decode(match.group(1)).decode(errors="replace")
    return text


def dump_redis(client: redis.Redis) -> str:
    """Every key of the database and its value, as text (kombu bodies decoded too)."""
    parts = []
    for key in client.scan_iter(count=1000):
        parts.append(f"{key!r} = {_decoded(_value(client, key))}")
    return "\n".join(parts)


def record_pages(served: Any, correlation_id: str) -> str:
    """The dashboard's record pages and their JSON (dead letters, sandbox, alerts, the job's
    timeline), each answered 200, as one text."""
    paths = (
        "/api/dead-letters",
        "/api/sandbox",
        "/api/alerts",
        f"/api/jobs/{correlation_id}",
        "/dead-letters",
        "/sandbox",
        "/alerts",
        f"/jobs/{correlation_id}",
    )
    pages = [served.http.get(path) for path in paths]
    assert all(status == 200 for status, _ in pages), [status for status, _ in pages]
    return "\n".join(page.decode() for _, page in pages)
