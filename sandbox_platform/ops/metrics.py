"""Platform metrics: counters each process keeps in memory and flushes to Redis in batches.

A worker never makes a Redis call per job for metrics: the guards' events add to in-memory
counters, and a background thread writes them about once a second in one pipeline, into a
totals hash and into the hash of the current minute. Any process reads them back, so a
dashboard on any host sees every worker's counts (:func:`read_totals`, :func:`read_minutes`).

Keys (``prefix`` = ``sp``)::

    sp:metrics:total           hash   field -> value since the first flush
    sp:metrics:m:<minute>      hash   field -> value during that minute (epoch minute; 2 h TTL)

A field is ``name|label=value|...`` with the labels sorted. A producer process that counts
something only it sees (a repeat caught at enqueue) adds it to a pipeline it sends anyway
(:func:`count_in`), not to its in-memory counters. What a SIGKILLed process had not
flushed yet (at most about one interval) is lost; a warm shutdown flushes.
"""

from __future__ import annotations

import atexit
import math
import os
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis
import structlog

from sandbox_platform.core.jobscope import in_child_of_job
from sandbox_platform.core.redis_client import REDIS_ERRORS
from sandbox_platform.core.redis_client import text as _redis_text
from sandbox_platform.guards.events import (
    DryRunIntercepted,
    Events,
    GovernorAdmitted,
    GovernorDenied,
    JobDeadLettered,
    JobFinished,
)

__all__ = [
    "DEDUPLICATED",
    "JOBS",
    "RUN_BUCKETS",
    "Metrics",
    "count_in",
    "field_name",
    "parse_field",
    "read_minutes",
    "read_totals",
]

log = structlog.get_logger(__name__)

JOBS = "jobs_total"
RUN_SECONDS = "job_run_seconds"
GOVERNOR_ADMITTED = "governor_admitted_total"
GOVERNOR_DENIED = "governor_denied_total"
#: worker runs skipped because their idempotency key was done: the stored result returned
REPLAYS = "idempotent_replays_total"
#: repeats caught at enqueue: an earlier job of the same idempotency key answered
DEDUPLICATED = "enqueue_deduplicated_total"
INTERCEPTS = "dry_run_intercepts_total"
DEAD_LETTERS = "dead_letters_total"
#: upper bounds (seconds) of the run-time histogram's buckets; +Inf is implied
RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BODY_RAN = frozenset({"succeeded", "retrying", "dead_lettered"})
MINUTE_TTL_SECONDS = 2 * 3600


def _clean(value: object) -> str:
    return str(value).replace("|", "/").replace("=", ":")


def field_name(name: str, labels: Mapping[str, object]) -> str:
    """``name|label=value|...`` with the labels sorted."""
    parts = [name, *(f"{key}={_clean(labels[key])}" for key in sorted(labels))]
    return "|".join(parts)


#: field names by (name, labels): a job's counters reuse the same few names
_FIELDS: dict[tuple[str, tuple[tuple[str, object], ...]], str] = {}
_FIELDS_MAX = 4096


def _cached_field(name: str, labels: Mapping[str, object]) -> str:
    """:func:`field_name`, remembered (the hot path builds no strings for known labels)."""
    try:
        key = (name, tuple(labels.items()))
        found = _FIELDS.get(key)
    except TypeError:  # a label value that cannot be hashed
        return field_name(name, labels)
    if found is None:
        found = field_name(name, labels)
        if len(_FIELDS) < _FIELDS_MAX:
            _FIELDS[key] = found
    return found


@dataclass(frozen=True)
class _Histogram:
    count: str
    sum: str
    #: (upper bound, field): the +Inf bucket last, with bound inf
    buckets: tuple[tuple[float, str], ...]


_HISTOGRAMS: dict[tuple[str, tuple[tuple[str, object], ...]], _Histogram] = {}


def _histogram_fields(name: str, labels: Mapping[str, object]) -> _Histogram:
    key = (name, tuple(labels.items()))
    try:
        found = _HISTOGRAMS.get(key)
    except TypeError:  # a label value that cannot be hashed: build it, keep nothing
        found, key = None, None  # type: ignore[assignment]
    if found is None:
        buckets = [(b, field_name(f"{name}_bucket", {**labels, "le": b})) for b in RUN_BUCKETS]
        buckets.append((math.inf, field_name(f"{name}_bucket", {**labels, "le": "+Inf"})))
        found = _Histogram(
            count=field_name(f"{name}_count", labels),
            sum=field_name(f"{name}_sum", labels),
            buckets=tuple(buckets),
        )
        if key is not None and len(_HISTOGRAMS) < _FIELDS_MAX:
            _HISTOGRAMS[key] = found
    return found


def parse_field(field: str) -> tuple[str, dict[str, str]]:
    name, *parts = field.split("|")
    return name, dict(part.split("=", 1) for part in parts)


def totals_key(prefix: str) -> str:
    return f"{prefix}:metrics:total"


def minute_key(prefix: str, minute: int) -> str:
    return f"{prefix}:metrics:m:{minute}"


def count_in(
    pipe: redis.client.Pipeline, prefix: str, name: str, labels: Mapping[str, object], amount: float
) -> None:
    """Add ``amount`` to a counter in the pipeline ``pipe`` (totals and the current minute, as
    a flush writes them): the caller sends it with its own commands."""
    key = _cached_field(name, labels)
    minute = minute_key(prefix, int(time.time() // 60))
    pipe.hincrbyfloat(totals_key(prefix), key, amount)
    pipe.hincrbyfloat(minute, key, amount)
    pipe.expire(minute, MINUTE_TTL_SECONDS)


class Metrics:
    """Counters of one process, flushed to Redis every ``interval`` seconds."""

    def __init__(self, client: redis.Redis, prefix: str = "sp", *, interval: float = 1.0) -> None:
        self.client = client
        self.prefix = prefix
        self.interval = interval
        self._counts: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        atexit.register(self.close)

    # -- counting (in memory) -------------------------------------------------------------

    def inc(self, name: str, labels: Mapping[str, object], amount: float = 1.0) -> None:
        self._ensure_thread()
        key = _cached_field(name, labels)
        with self._lock:
            self._counts[key] += amount
        if in_child_of_job():  # a process task code started may exit before the next flush
            self.flush()

    def observe(self, name: str, labels: Mapping[str, object], seconds: float) -> None:
        """One observation of a histogram (cumulative buckets, as Prometheus counts them)."""
        self._ensure_thread()
        fields = _histogram_fields(name, labels)
        with self._lock:
            counts = self._counts
            counts[fields.count] += 1.0
            counts[fields.sum] += seconds
            for bound, key in fields.buckets:
                if seconds <= bound:
                    counts[key] += 1.0

    # -- flushing -------------------------------------------------------------------------

    def flush(self) -> int:
        """Write what was counted since the last flush; return how many fields."""
        with self._lock:
            counts, self._counts = self._counts, defaultdict(float)
        if not counts:
            return 0
        minute = int(time.time() // 60)
        pipe = self.client.pipeline(transaction=False)
        for key, amount in counts.items():
            pipe.hincrbyfloat(totals_key(self.prefix), key, amount)
            if "_bucket|" not in key:
                pipe.hincrbyfloat(minute_key(self.prefix, minute), key, amount)
        pipe.expire(minute_key(self.prefix, minute), MINUTE_TTL_SECONDS)
        try:
            pipe.execute()
        except REDIS_ERRORS as exc:
            log.warning("metrics flush failed; counts kept for the next one", error=str(exc))
            with self._lock:
                for key, amount in counts.items():
                    self._counts[key] += amount
            return 0
        return len(counts)

    def close(self) -> None:
        self._stopped.set()
        if os.getpid() == self._pid:
            self.flush()

    def _ensure_thread(self) -> None:
        if os.getpid() != self._pid:  # forked: the parent's thread and counts are not ours
            self._pid = os.getpid()
            self._thread = None
            self._counts = defaultdict(float)
        thread = self._thread
        if thread is not None and thread.ident is not None and not self._stopped.is_set():
            return  # started in this process and not stopped (its loop never raises)
        if thread is None or not thread.is_alive():
            self._stopped.clear()
            self._thread = threading.Thread(
                target=self._loop, name="sandbox-platform-metrics", daemon=True
            )
            self._thread.start()

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self.flush()
            except Exception:
                log.exception("metrics flush failed")

    # -- what is counted ------------------------------------------------------------------

    def subscribe(self, events: Events) -> None:
        """Count the guards' events (replacing an earlier subscription of the same bus)."""
        uid = "sandbox_platform.metrics"
        events.subscribe(JobFinished, self._finished, uid=f"{uid}.finished")
        events.subscribe(GovernorAdmitted, self._admitted, uid=f"{uid}.admitted")
        events.subscribe(GovernorDenied, self._denied, uid=f"{uid}.denied")
        events.subscribe(DryRunIntercepted, self._intercepted, uid=f"{uid}.intercepted")
        events.subscribe(JobDeadLettered, self._dead_lettered, uid=f"{uid}.dead_lettered")

    def _finished(self, event: JobFinished) -> None:
        self.inc(JOBS, {"task": event.task, "state": event.state})
        if event.state == "deduplicated":
            self.inc(REPLAYS, {"task": event.task})
        if event.state in _BODY_RAN:
            self.observe(RUN_SECONDS, {"task": event.task}, event.seconds)

    def _admitted(self, event: GovernorAdmitted) -> None:
        for resource in event.resources:
            self.inc(GOVERNOR_ADMITTED, {"resource": resource})

    def _denied(self, event: GovernorDenied) -> None:
        self.inc(GOVERNOR_DENIED, {"resource": event.resource})

    def _intercepted(self, event: DryRunIntercepted) -> None:
        self.inc(INTERCEPTS, {"action": event.record.get("action", "")})

    def _dead_lettered(self, event: JobDeadLettered) -> None:
        self.inc(DEAD_LETTERS, {"reason": event.reason})


def _numbers(raw: Mapping[Any, Any]) -> dict[str, float]:
    return {_redis_text(k): float(_redis_text(v)) for k, v in raw.items()}


def read_totals(client: redis.Redis, prefix: str = "sp") -> dict[str, float]:
    """Every counter since the first flush, cluster-wide."""
    return _numbers(client.hgetall(totals_key(prefix)))


def read_minutes(
    client: redis.Redis, prefix: str = "sp", minutes: int = 60
) -> list[tuple[int, dict[str, float]]]:
    """The last ``minutes`` minutes (epoch minute, counters), oldest first."""
    now_minute = int(time.time() // 60)
    span = [now_minute - back for back in range(minutes - 1, -1, -1)]
    pipe = client.pipeline(transaction=False)
    for minute in span:
        pipe.hgetall(minute_key(prefix, minute))
    return [(minute, _numbers(raw)) for minute, raw in zip(span, pipe.execute(), strict=True)]
