"""Re-encrypting stored dead letters under the key ring's current key (``sandbox-platform
secrets reencrypt``), so an old key can leave the ring.

Each envelope among a dead letter's arguments (top level of ``args`` and ``kwargs``) sealed
under another key id is opened with the ring and sealed again with the current key, with the
same associated data (the task's name and the argument's name, named as the secrets guard
names them: a positional argument by the task's parameter name, else ``#<position>``). Each
dead letter is updated in a transaction of its own, under a row lock. An envelope that cannot
be opened (its key id is not in the ring, its bytes do not verify, its task is not in the app
so a positional argument has no name) is left as it is and reported; the others still move.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from celery import Celery

from sandbox_platform.core.sealing import (
    SecretUndecryptable,
    envelope_key_id,
    open_value,
    seal_value,
)
from sandbox_platform.core.secret_keys import KeyRing
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import DeadLetter
from sandbox_platform.ops.secret_usage import holds_envelopes

__all__ = [
    "ArgumentNames",
    "Reencrypted",
    "Resealed",
    "Undecryptable",
    "app_argnames",
    "reencrypt_dead_letters",
    "reencrypt_message",
]

#: a task's name -> its parameter names in order (None: the task is not known)
ArgumentNames = Callable[[str], Sequence[str] | None]

_BATCH = 500


@dataclass(frozen=True)
class Undecryptable:
    """An envelope left as it was: where it is, its key id (never key material) and why."""

    dead_letter_id: int
    task: str
    argument: str
    key_id: str
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "dead_letter_id": self.dead_letter_id,
            "task": self.task,
            "argument": self.argument,
            "key_id": self.key_id,
            "why": self.why,
        }


@dataclass
class Reencrypted:
    """What a run did (or, dry, would do)."""

    current_key_id: str
    dry_run: bool = False
    #: dead letters holding envelopes that were read
    scanned: int = 0
    #: dead letters updated, and envelopes sealed again
    rows: int = 0
    envelopes: int = 0
    undecryptable: list[Undecryptable] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "current_key_id": self.current_key_id,
            "dry_run": self.dry_run,
            "scanned": self.scanned,
            "rows": self.rows,
            "envelopes": self.envelopes,
            "undecryptable": [item.to_dict() for item in self.undecryptable],
        }


def app_argnames(app: Celery) -> ArgumentNames:
    """The parameter names of ``app``'s tasks, as the secrets guard reads them."""

    def names(task_name: str) -> Sequence[str] | None:
        task = app.tasks.get(task_name)
        if task is None:
            return None
        return tuple(getattr(task, "sp_argnames", ()) or ())

    return names


@dataclass
class Resealed:
    """One message with its envelopes sealed again; what could not be opened, and why."""

    message: dict[str, Any]
    envelopes: int = 0
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # argument, kid, why


def _argument_name(names: Sequence[str], position: int) -> str:
    return names[position] if position < len(names) else f"#{position}"


def _reseal(
    ring: KeyRing, task: str, name: str, value: Any, moved: Resealed, *, named: bool = True
) -> Any:
    """``value`` sealed under the current key if it is an envelope under another one
    (``named`` False: the argument's name is not known, only its position)."""
    key_id = envelope_key_id(value)
    if key_id is None or key_id == ring.current_id:
        return value
    if not named:
        why = "the task is not registered in the app: its positional arguments have no names"
        moved.problems.append((name, key_id, why))
        return value
    try:
        plain = open_value(ring, task, name, value)
    except SecretUndecryptable as exc:
        moved.problems.append((name, key_id, str(exc)))
        return value
    moved.envelopes += 1
    return seal_value(ring, task, name, plain)


def reencrypt_message(
    ring: KeyRing, task: str, message: Mapping[str, Any], names: Sequence[str] | None
) -> Resealed:
    """A new message with every envelope under another key sealed under the current one."""
    moved = Resealed(dict(message))
    args = message.get("args")
    if isinstance(args, list):
        moved.message["args"] = [
            _reseal(
                ring, task, _argument_name(names or (), i), value, moved, named=names is not None
            )
            for i, value in enumerate(args)
        ]
    kwargs = message.get("kwargs")
    if isinstance(kwargs, Mapping):
        moved.message["kwargs"] = {
            name: _reseal(ring, task, name, value, moved) for name, value in kwargs.items()
        }
    return moved


def _candidates(database_url: str, after: int) -> list[int]:
    query = (
        sa.select(DeadLetter.id)
        .where(holds_envelopes(), DeadLetter.id > after)
        .order_by(DeadLetter.id)
        .limit(_BATCH)
    )
    with session_scope(database_url) as session:
        return list(session.scalars(query))


def _reencrypt_row(
    database_url: str, dead_letter_id: int, ring: KeyRing, names: ArgumentNames, result: Reencrypted
) -> None:
    with session_scope(database_url) as session:
        row = session.get(DeadLetter, dead_letter_id, with_for_update=True)
        if row is None or not isinstance(row.message, Mapping):
            return
        result.scanned += 1
        moved = reencrypt_message(ring, row.task_name, row.message, names(row.task_name))
        result.undecryptable += [
            Undecryptable(dead_letter_id, row.task_name, argument, key_id, why)
            for argument, key_id, why in moved.problems
        ]
        if moved.envelopes:
            result.rows += 1
            result.envelopes += moved.envelopes
            if not result.dry_run:
                row.message = moved.message  # a new dict: the JSON column sees the change


def reencrypt_dead_letters(
    database_url: str, ring: KeyRing, names: ArgumentNames, *, dry_run: bool = False
) -> Reencrypted:
    """Seal every stored dead letter's envelopes under ``ring``'s current key (``dry_run``:
    count what would move, change nothing)."""
    result = Reencrypted(current_key_id=ring.current_id, dry_run=dry_run)
    after = 0
    while batch := _candidates(database_url, after):
        for dead_letter_id in batch:
            _reencrypt_row(database_url, dead_letter_id, ring, names, result)
        after = batch[-1]
    return result
