"""One job's story found by whatever its user holds: a task id, a correlation id or an
idempotency key (``jobs show`` and the dashboard's ``/jobs/<id>``).

Tried in this order, the first that matches wins:

1. **task id** (what ``.delay()`` returns): a run record, dead letter or dry-run event with that
   ``task_id``. The story shown is that of the job's correlation id (every job it belongs
   with), or only the job's own records when they carry none.
2. **correlation id**: any record carrying it (today's view).
3. **idempotency key**, exactly as the platform stores it: ``<task name>:<the key template's
   value>`` for a task declared with ``idempotency_key="..."`` (``shop.charge:order-42``), or
   the key as passed to ``apply_async(idempotency_key=...)``. Found in an effect row
   (``record_effect``), a dead letter's headers, or the key's Redis record (``tid``: the job
   first published under it, kept while the key lives: its TTL plus an hour, and only with
   ``dedupe`` on). The story is then that job's, as for a task id.

Beside its entries, a story carries the tree of the jobs it shows (:mod:`.job_tree`): the
root, each job's parent and children, the matched job marked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox_platform.coordination.idempotency import idempotency_keys
from sandbox_platform.core.context import IDEMPOTENCY_HEADER
from sandbox_platform.core.errors import PlatformError
from sandbox_platform.core.redis_client import REDIS_ERRORS
from sandbox_platform.core.redis_client import text as redis_text
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import DeadLetter, DryRunEvent, Effect, JobRun
from sandbox_platform.ops.job_tree import job_tree
from sandbox_platform.ops.records import correlation_timeline, task_timeline

__all__ = ["JobStory", "Match", "MatchKind", "find_job", "nothing_matched"]

MatchKind = Literal["task_id", "correlation_id", "idempotency_key"]
_LABEL = MappingProxyType(
    {"task_id": "task id", "correlation_id": "correlation id", "idempotency_key": "idempotency key"}
)
#: what asking Redis for a key's record may raise (SettingsError: no embedded Redis to start)
_REDIS_LOOKUP_ERRORS: tuple[type[Exception], ...] = (*REDIS_ERRORS, PlatformError, OSError)


@dataclass(frozen=True)
class Match:
    """What the looked-up string was, and the job and correlation id it led to."""

    kind: MatchKind
    value: str
    task_id: str | None = None
    correlation_id: str | None = None

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "value": self.value}

    def describe(self) -> str:
        """``matched task id X (correlation id Y)`` and the like."""
        details = []
        if self.kind == "idempotency_key" and self.task_id:
            details.append(f"task id {self.task_id}")
        if self.kind != "correlation_id":
            details.append(f"correlation id {self.correlation_id or '(none)'}")
        text = f"matched {_LABEL[self.kind]} {self.value}"
        return f"{text} ({', '.join(details)})" if details else text


@dataclass
class JobStory:
    """The match (None when nothing matched) and the entries shown, in time order (each
    carries ``kind`` and ``at``; those of the matched job ``matched_job: true``)."""

    match: Match | None
    entries: list[dict[str, Any]] = field(default_factory=list)
    #: the trees of the jobs shown (ops/job_tree.py: root, parents, children), depth first
    tree: list[dict[str, Any]] = field(default_factory=list)
    #: what could not be checked (Redis unreachable), for the "nothing matched" message
    unchecked: str | None = None

    @property
    def correlation_id(self) -> str | None:
        return self.match.correlation_id if self.match is not None else None


def nothing_matched(value: str) -> str:
    return f"nothing carries task id, correlation id or idempotency key {value!r}"


def find_job(
    database_url: str,
    value: str,
    redis_client: Callable[[], redis.Redis] | None = None,
    prefix: str = "sp",
) -> JobStory:
    """The story of the job ``value`` names (see the module's docstring for the order).

    ``redis_client`` (called only when the database knows no such task id, correlation id or
    key) lets an idempotency key be found in its Redis record too."""
    with session_scope(database_url) as session:
        found, correlation_id = _task_correlation(session, value)
        if found:
            match = Match("task_id", value, task_id=value, correlation_id=correlation_id)
            return _story(database_url, match)
    entries = correlation_timeline(database_url, value)
    if entries:
        match = Match("correlation_id", value, correlation_id=value)
        return JobStory(match, entries, _tree(database_url, entries, None))
    key_match, unchecked = _key_match(database_url, value, redis_client, prefix)
    if key_match is None:
        return JobStory(None, unchecked=unchecked)
    return _story(database_url, key_match)


def _story(database_url: str, match: Match) -> JobStory:
    if match.correlation_id is not None:
        entries = correlation_timeline(database_url, match.correlation_id)
    elif match.task_id is not None:
        entries = task_timeline(database_url, match.task_id)
    else:
        entries = []
    for entry in entries:
        if match.task_id is not None and entry.get("task_id") == match.task_id:
            entry["matched_job"] = True
    return JobStory(match, entries, _tree(database_url, entries, match.task_id))


def _tree(
    database_url: str, entries: list[dict[str, Any]], task_id: str | None
) -> list[dict[str, Any]]:
    """The trees of the jobs in ``entries`` (and of ``task_id``), its node marked."""
    named = {entry["task_id"] for entry in entries if entry.get("task_id")}
    tree = job_tree(database_url, named | ({task_id} if task_id else set()))
    for node in tree:
        node["matched_job"] = node["task_id"] == task_id
    return tree


def _task_correlation(session: Session, task_id: str) -> tuple[bool, str | None]:
    """Whether any record carries ``task_id``, and the correlation id one of them carries."""
    found = False
    for model in (JobRun, DeadLetter, DryRunEvent):
        query = select(model.correlation_id).where(model.task_id == task_id)
        rows = list(session.execute(query.limit(10)))
        found = found or bool(rows)
        for (correlation_id,) in rows:
            if correlation_id:
                return True, str(correlation_id)
    return found, None


def _key_match(
    database_url: str,
    key: str,
    redis_client: Callable[[], redis.Redis] | None,
    prefix: str,
) -> tuple[Match | None, str | None]:
    """The job idempotency ``key`` names: an effect row, a dead letter, its Redis record."""
    task_id: str | None = None
    correlation_id: str | None = None
    with session_scope(database_url) as session:
        effect = session.execute(
            select(Effect.task_id, Effect.correlation_id).where(Effect.idempotency_key == key)
        ).first()
        if effect is None:
            headers = DeadLetter.message["headers"]
            effect = session.execute(
                select(DeadLetter.task_id, DeadLetter.correlation_id)
                .where(headers[IDEMPOTENCY_HEADER].as_string() == key)
                .order_by(DeadLetter.id.desc())
                .limit(1)
            ).first()
        if effect is not None:
            task_id, correlation_id = effect
    unchecked = None
    if task_id is None and correlation_id is None and redis_client is not None:
        try:
            held = redis_client().hget(idempotency_keys(prefix, key).record, "tid")
        except _REDIS_LOOKUP_ERRORS as exc:
            held, unchecked = None, f"idempotency keys in Redis not checked: {exc}"
        if held:
            task_id = redis_text(held).partition(" ")[0] or None
    if task_id is None and correlation_id is None:
        return None, unchecked
    if correlation_id is None and task_id is not None:
        with session_scope(database_url) as session:
            correlation_id = _task_correlation(session, task_id)[1]
    return Match("idempotency_key", key, task_id=task_id, correlation_id=correlation_id), None
