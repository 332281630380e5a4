"""Which sealing keys are in use: the key ids of the envelopes stored in dead letters and
waiting on the broker, set against the configured key ring (the readiness check
``secret_keys``, :func:`sandbox_platform.ops.readiness_checks.check_secret_keys`).

Only key ids are read and reported, never key material. Every scan is bounded: dead letters
are filtered in SQL on the envelope mark and at most :data:`DEAD_LETTER_SCAN_LIMIT` of them
are read; on a Redis broker the first :data:`QUEUE_SCAN_LIMIT` messages of each known queue
(and its priority lists) and of the transport's unacknowledged hash are decoded. A RabbitMQ
broker's queues are not read (a message cannot be peeked there without taking it).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis
import sqlalchemy as sa
from celery import Celery
from redis.backoff import NoBackoff
from redis.retry import Retry

from sandbox_platform.core.broker_kind import BrokerKind
from sandbox_platform.core.errors import SettingsError
from sandbox_platform.core.sealing import ENVELOPE_MARK, envelope_key_id
from sandbox_platform.core.secret_config import secret_keys_for
from sandbox_platform.core.secret_keys import SECRET_KEYS_SETTING
from sandbox_platform.core.settings import Mode, Settings
from sandbox_platform.db.models import DeadLetter
from sandbox_platform.guards.base import guard_options
from sandbox_platform.ops.backlog import known_queues

__all__ = [
    "DEAD_LETTER_SCAN_LIMIT",
    "QUEUE_SCAN_LIMIT",
    "KeyUsage",
    "holds_envelopes",
    "message_key_ids",
    "secret_key_usage",
    "secret_tasks",
]

DEAD_LETTER_SCAN_LIMIT = 10_000
QUEUE_SCAN_LIMIT = 1000
# kombu's Redis transport keeps priorities 3, 6 and 9 in lists named queue + sep + step
# (as ops/backlog.py reads them), and unacknowledged messages in one hash
_PRIORITY_LISTS = ("", "\x06\x163", "\x06\x166", "\x06\x169")
_UNACKED_KEY = "unacked"


def holds_envelopes() -> sa.ColumnElement[bool]:
    """The SQL filter of dead letters whose message text holds an envelope mark."""
    return sa.cast(DeadLetter.message, sa.Text).contains(ENVELOPE_MARK, autoescape=True)


def message_key_ids(args: Any, kwargs: Any) -> Iterator[str]:
    """The key id of each envelope among a message's arguments (top level)."""
    values = list(args) if isinstance(args, list | tuple) else []
    values += list(kwargs.values()) if isinstance(kwargs, Mapping) else []
    for value in values:
        key_id = envelope_key_id(value)
        if key_id is not None:
            yield key_id


def secret_tasks(app: Celery) -> list[str]:
    """The names of ``app``'s tasks that declare secret arguments."""
    names = []
    for task in list(app.tasks.values()):
        options = guard_options(task)
        if options is not None and options.get("secret"):
            names.append(str(task.name))
    return sorted(names)


@dataclass
class KeyUsage:
    """Key ids in use (id -> where -> how many envelopes) and the ring they need."""

    declared: list[str]
    used: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    ring_ids: tuple[str, ...] = ()
    #: why the ring could not be read (naming the variable), when it was needed
    keys_problem: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        return sorted(key_id for key_id in self.used if key_id not in self.ring_ids)

    def where(self, key_id: str) -> str:
        return ", ".join(f"{place} ({count})" for place, count in sorted(self.used[key_id].items()))

    def _noted(self, text: str) -> str:
        return "; ".join([text, *self.notes])

    def keys_problem_message(self) -> str:
        used = f"; key id(s) in use: {', '.join(sorted(self.used))}" if self.used else ""
        tasks = f"; tasks with secret arguments: {', '.join(self.declared[:5])}"
        return self._noted(f"{self.keys_problem}{tasks if self.declared else ''}{used}")

    def missing_message(self) -> str:
        uses = "; ".join(f"{key_id!r} by {self.where(key_id)}" for key_id in self.missing)
        return self._noted(
            f"key id(s) {', '.join(map(repr, self.missing))} not in {SECRET_KEYS_SETTING} "
            f"(configured: {', '.join(self.ring_ids)}) but used: {uses}; add them back after "
            "the current key and run `sandbox-platform secrets reencrypt`"
        )

    def summary(self) -> str:
        if not self.used:
            tasks = f"{len(self.declared)} task(s) declare secret arguments"
            return self._noted(
                f"{tasks if self.declared else 'no task declares secrets'}; "
                "nothing stored or queued is sealed"
            )
        uses = "; ".join(f"{key_id!r}: {self.where(key_id)}" for key_id in sorted(self.used))
        return self._noted(f"every key id in use is configured ({uses})")


def _scan_dead_letters(engine: sa.Engine, usage: KeyUsage, limit: int) -> None:
    query = (
        sa.select(DeadLetter.message)
        .where(holds_envelopes())
        .order_by(DeadLetter.id)
        .limit(limit + 1)
    )
    with engine.connect() as conn:
        messages = list(conn.execute(query).scalars())
    if len(messages) > limit:
        messages = messages[:limit]
        usage.notes.append(f"only the first {limit} dead letters holding envelopes were read")
    for message in messages:
        if isinstance(message, Mapping):
            for key_id in message_key_ids(message.get("args"), message.get("kwargs")):
                usage.used[key_id]["dead letters"] += 1


def _body(payload: Any) -> Any:
    """The decoded body of a kombu message as the Redis transport stores it."""
    if not isinstance(payload, Mapping):
        return None
    body = payload.get("body")
    properties = payload.get("properties")
    if isinstance(properties, Mapping) and properties.get("body_encoding") == "base64":
        body = base64.b64decode(str(body))
    return json.loads(body) if isinstance(body, str | bytes) else body


def _raw_key_ids(raw: bytes | str, unacked: bool) -> list[str]:
    """The key ids of one stored message (unacked: the hash's ``[message, exchange, key]``)."""
    try:
        payload = json.loads(raw)
        body = _body(payload[0] if unacked and isinstance(payload, list) else payload)
    except (ValueError, TypeError, binascii.Error, IndexError):
        return []  # not a message the platform can read: the worker dead-letters it
    if isinstance(body, list) and len(body) >= 2:  # protocol 2: [args, kwargs, embed]
        return list(message_key_ids(body[0], body[1]))
    if isinstance(body, Mapping):  # protocol 1
        return list(message_key_ids(body.get("args"), body.get("kwargs")))
    return []


def _broker_client(settings: Settings, coordination: redis.Redis, timeout: float) -> redis.Redis:
    if settings.broker_url is None:
        return coordination  # the broker is the coordination Redis
    url = settings.broker_url
    if url.startswith("redis+socket://"):
        url = "unix://" + url.removeprefix("redis+socket://")
    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )


def _scan_lists(client: redis.Redis, prefix: str, queues: Iterable[str], usage: KeyUsage) -> None:
    for queue in queues:
        budget = QUEUE_SCAN_LIMIT
        for suffix in _PRIORITY_LISTS:
            if budget <= 0:
                break
            # the oldest messages are at the right end of the list
            raws: list[bytes | str] = client.lrange(f"{prefix}{queue}{suffix}", -budget, -1)
            budget -= len(raws)
            for raw in raws:
                for key_id in _raw_key_ids(raw, unacked=False):
                    usage.used[key_id][f"queue {queue}"] += 1


def _scan_unacked(client: redis.Redis, key: str, usage: KeyUsage) -> None:
    for seen, (_tag, raw) in enumerate(client.hscan_iter(key, count=QUEUE_SCAN_LIMIT)):
        if seen >= QUEUE_SCAN_LIMIT:
            break
        for key_id in _raw_key_ids(raw, unacked=True):
            usage.used[key_id]["unacknowledged"] += 1


def _scan_broker(
    settings: Settings, app: Celery, coordination: redis.Redis, timeout: float, usage: KeyUsage
) -> None:
    if settings.broker_kind is BrokerKind.RABBITMQ:
        usage.notes.append("queued messages not read (RabbitMQ broker)")
        return
    options = app.conf.get("broker_transport_options") or {}
    prefix = str(options.get("global_keyprefix") or "")
    client = _broker_client(settings, coordination, timeout)
    try:
        _scan_lists(client, prefix, known_queues(app), usage)
        _scan_unacked(client, prefix + str(options.get("unacked_key") or _UNACKED_KEY), usage)
    finally:
        if client is not coordination:
            client.close()


def _read_ring(settings: Settings, usage: KeyUsage) -> bool:
    try:
        usage.ring_ids = secret_keys_for(settings).ring.ids
    except SettingsError as error:  # "NAME: problem" would read as a secret to redaction
        state = "is not set" if settings.mode is Mode.LIVE else "cannot be read"
        usage.keys_problem = f"{error.setting} {state} ({error.problem})"
        return False
    return True


def secret_key_usage(
    settings: Settings,
    app: Celery,
    engine: sa.Engine,
    coordination: redis.Redis,
    timeout: float,
    *,
    dead_letter_limit: int = DEAD_LETTER_SCAN_LIMIT,
) -> KeyUsage:
    """The key ids in use and, when any is (or a live app declares secrets), the ring's ids.

    The ring is read (:func:`~sandbox_platform.core.secret_keys.secret_keys_for`) only then,
    so an app without secrets needs no keys; a ring that cannot be read is ``keys_problem``
    (a live app with secret arguments finds it out first, before any service is asked).
    """
    usage = KeyUsage(declared=secret_tasks(app))
    live_secrets = bool(usage.declared) and settings.mode is Mode.LIVE
    if live_secrets and not _read_ring(settings, usage):
        return usage
    _scan_dead_letters(engine, usage, dead_letter_limit)
    _scan_broker(settings, app, coordination, timeout, usage)
    if usage.used and not live_secrets:
        _read_ring(settings, usage)
    return usage
