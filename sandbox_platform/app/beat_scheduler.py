"""A Celery beat scheduler for many beat processes: only the lease holder publishes.

Run any number of ``celery beat --scheduler sandbox_platform.app.beat_scheduler:LeaderScheduler``;
they all shadow the schedule, and only the holder of the Redis lease
(:class:`~sandbox_platform.ops.leader.LeaderLease`, name ``beat``) sends due tasks.

* Every pass of the loop (at most every ``ttl / 5`` seconds: ``max_interval`` is capped to that)
  the leader renews the lease and a standby tries to take it. With ``ttl = 1.5 x`` the
  heartbeat interval, a standby leads within ``1.2 x ttl = 1.8`` intervals of the leader's
  death (its last renewal at most ``ttl / 5`` before it died, then ``ttl``, then one poll).
* Interval entries (``schedule(run_every)``, a number or a timedelta in ``beat_schedule``) fire
  on slot boundaries of Redis time: slot = ``floor(now / run_every)``. Every message is stamped
  with a tick id ``"<entry name>:<slot start epoch>"`` in the ``tick_id`` header (and in the
  ``tick_id`` keyword argument when the entry declares one, e.g. ``kwargs={"tick_id": None}``),
  plus the leader's fencing token in ``sp_fencing_token``. Whichever beat sends slot *n*, the
  same id goes out, so the consumer (:meth:`Heartbeat.record_tick`) runs one tick once.
* A new leader sends the current slot of each interval entry at once (the old one may or may
  not have sent it; a duplicate carries the same tick id and is dropped by the consumer), so
  the heartbeat gap across a failover stays under two intervals.
* Other schedules (crontab, solar) keep Celery's own timing; their tick id uses the minute.
* The standby advances its copy of the schedule as if it had sent, so a takeover does not
  replay a backlog.
* On shutdown the leader releases the lease, so a standby takes over at its next poll.
* It extends :class:`celery.beat.Scheduler`, not ``PersistentScheduler``: no ``shelve`` file
  (that is pickle, which the platform refuses everywhere, and a writable volume per beat).
  Interval entries need no stored state (slots come from Redis time; tick ids dedupe); the
  cost is that a crontab entry due while *every* beat was down is not replayed at start-up.
  ``--schedule``/``-s`` is accepted and ignored.

``app.conf`` keys:

``sandbox_platform_redis_url``
    Redis for the lease (default: ``broker_url``).
``sandbox_platform_key_prefix``
    key prefix, default ``"sp"``: the lease lives at ``<prefix>:{leader:beat}:lease``.
``sandbox_platform_leader_ttl``
    lease time-to-live in seconds, default 15 (1.5 x a 10 s heartbeat).
``sandbox_platform_beat_holder_id``
    optional holder id; default ``host:pid:random``, made once per process and app: Celery
    builds a second scheduler for its start-up banner (``service.get_scheduler(lazy=True)``),
    and every scheduler of the process names the same holder (:func:`beat_holder_id`).
"""

from __future__ import annotations

import copy
import heapq
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from celery.beat import ScheduleEntry, Scheduler
from celery.beat import event_t as beat_event_t
from celery.schedules import schedule as interval_schedule

from sandbox_platform.app.schedule import with_platform_schedule
from sandbox_platform.core.errors import SettingsError
from sandbox_platform.core.redis_client import get_redis
from sandbox_platform.ops.leader import LeaderLease, default_holder_id

__all__ = [
    "DEFAULT_LEADER_TTL",
    "FENCING_HEADER",
    "LEASE_NAME",
    "TICK_HEADER",
    "LeaderScheduler",
    "beat_holder_id",
    "tick_id_for",
]

logger = logging.getLogger(__name__)

LEASE_NAME = "beat"
TICK_HEADER = "tick_id"
FENCING_HEADER = "sp_fencing_token"
DEFAULT_LEADER_TTL = 15.0
#: how many lease polls fit in one ttl
POLLS_PER_TTL = 5
#: wake this long after a slot boundary (Celery's ``adjust`` wakes 10 ms early)
_WAKE_PAST_BOUNDARY = 0.012
#: tick-id granularity of schedules that are not plain intervals (crontab fires once a minute)
_OTHER_SLOT_SECONDS = 60.0


def tick_id_for(name: str, slot_start: float) -> str:
    """``"<name>:<slot start epoch>"``; whole seconds print without a fraction."""
    whole = math.floor(slot_start)
    if slot_start == whole:
        return f"{name}:{whole}"
    return f"{name}:{slot_start:.3f}"


#: where a process keeps its holder id on the app: (pid, id), so a forked child makes its own
_HOLDER_ATTR = "_sp_beat_holder"
_holder_lock = threading.Lock()


def beat_holder_id(app: Any) -> str:
    """The lease holder id of this process's beat for ``app``: the
    ``sandbox_platform_beat_holder_id`` setting, else one ``host:pid:random`` made on first use
    and kept for the life of the process, so the banner's scheduler and the running one (and
    every line either logs) name the same holder."""
    configured = app.conf.get("sandbox_platform_beat_holder_id")
    if configured:
        return str(configured)
    pid = os.getpid()
    with _holder_lock:
        held = getattr(app, _HOLDER_ATTR, None)
        if held is None or held[0] != pid:
            held = (pid, default_holder_id())
            setattr(app, _HOLDER_ATTR, held)
    return str(held[1])


def _interval_seconds(entry: ScheduleEntry) -> float | None:
    sched = entry.schedule
    if type(sched) is interval_schedule:
        seconds = float(sched.seconds)  # run_every in seconds (a float at run time)
        return seconds if seconds > 0 else None
    return None


class LeaderScheduler(Scheduler):
    """A beat scheduler that publishes only while it holds the Redis ``beat`` lease."""

    _heap: list[beat_event_t] | None  # Celery's event heap (set by populate_heap)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        app = kwargs.get("app", args[0] if args else None)
        if app is None:
            raise TypeError("LeaderScheduler needs the Celery app")
        conf = app.conf
        url = conf.get("sandbox_platform_redis_url") or conf.get("broker_url")
        if not url or not str(url).startswith(
            ("redis://", "rediss://", "unix://", "redis+socket://")
        ):
            raise SettingsError(
                "sandbox_platform_redis_url",
                f"the beat lease needs a Redis URL (got {url!r})",
            )
        settings = getattr(app, "platform_settings", None)
        if settings is not None:  # a platform app: its schedule runs the platform's too
            conf.beat_schedule = with_platform_schedule(conf.beat_schedule, settings)
        ttl = float(conf.get("sandbox_platform_leader_ttl") or DEFAULT_LEADER_TTL)
        if ttl <= 0:
            raise SettingsError("sandbox_platform_leader_ttl", f"must be positive, got {ttl!r}")
        prefix = str(conf.get("sandbox_platform_key_prefix") or "sp")
        self.lease = LeaderLease(
            get_redis(str(url)),
            LEASE_NAME,
            holder_id=beat_holder_id(app),
            ttl_seconds=ttl,
            prefix=prefix,
        )
        self.poll_interval = ttl / POLLS_PER_TTL
        self._next_lease_check = 0.0
        #: slot index last sent (or shadowed) per interval entry
        self._sent_slots: dict[str, int] = {}
        #: slot start decided by is_due, consumed by apply_entry
        self._due_slot_starts: dict[str, float] = {}
        #: entries to send at once because we just became the leader
        self._resend: set[str] = set()
        super().__init__(*args, **kwargs)
        current = self.max_interval or self.poll_interval
        self.max_interval = min(current, self.poll_interval)  # type: ignore[assignment]

    # -- lease -------------------------------------------------------------------------------

    def now_epoch(self) -> float:
        """Redis time in seconds (local clock corrected by the last measured offset)."""
        return self.lease.redis_now()

    def maintain_lease(self, force: bool = False) -> bool:
        """Renew (leader) or try to acquire (standby) at most once per poll; True if leading."""
        now = time.monotonic()
        if not force and now < self._next_lease_check:
            return self.lease.is_leader
        self._next_lease_check = now + self.poll_interval
        was_leader = self.lease.is_leader
        try:
            leading = self.lease.renew() if was_leader else False
            if not leading:
                leading = self.lease.try_acquire() is not None
        except Exception:
            logger.exception("beat lease %s: Redis call failed", self.lease.holder_id)
            return self.lease.is_leader
        if leading and not was_leader:
            logger.warning(
                "beat %s is now the leader (fencing token %s)",
                self.lease.holder_id,
                self.lease.token,
            )
            self._resend = {n for n, e in self.schedule.items() if _interval_seconds(e)}
            self._heap = None  # re-evaluate every entry now
        elif was_leader and not leading:
            logger.warning("beat %s lost the lease; standing by", self.lease.holder_id)
        return leading

    def populate_heap(
        self,
        event_t: type[beat_event_t] = beat_event_t,
        heapify: Callable[[list[Any]], None] = heapq.heapify,
    ) -> None:
        """Celery's heap, but entries to resend after a takeover are due right now."""
        super().populate_heap(event_t, heapify)
        heap = self._heap
        if heap and self._resend:
            self._heap = [
                event_t(0, event.priority, event.entry)
                if event.entry.name in self._resend
                else event
                for event in heap
            ]
            heapify(self._heap)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        self.maintain_lease()
        delay = super().tick(*args, **kwargs)
        return min(delay, self.poll_interval)

    # -- schedule ----------------------------------------------------------------------------

    def is_due(self, entry: ScheduleEntry) -> tuple[bool, float]:
        interval = _interval_seconds(entry)
        name = entry.name or ""
        if interval is None:
            return super().is_due(entry)
        now = self.now_epoch()
        slot = math.floor(now / interval)
        last = self._sent_slots.get(name)
        if last is None:
            last = (
                math.floor(entry.last_run_at.timestamp() / interval)
                if entry.last_run_at is not None
                else slot - 1
            )
            self._sent_slots[name] = last
        if name in self._resend:
            self._resend.discard(name)
            last = min(last, slot - 1)
        until_next = (slot + 1) * interval - now + _WAKE_PAST_BOUNDARY
        if slot > last:
            self._due_slot_starts[name] = slot * interval
            return True, until_next
        return False, until_next

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> Any:
        name = entry.name or ""
        slot_start = self._due_slot_starts.pop(name, None)
        interval = _interval_seconds(entry)
        if slot_start is None:
            slot_seconds = interval or _OTHER_SLOT_SECONDS
            slot_start = math.floor(self.now_epoch() / slot_seconds) * slot_seconds
        if interval is not None:
            self._sent_slots[name] = round(slot_start / interval)
        tick_id = tick_id_for(name, slot_start)
        token = self.lease.token if self.maintain_lease() else None
        if token is None:
            logger.debug("beat standby %s: not sending %s", self.lease.holder_id, tick_id)
            return None
        stamped = copy.copy(entry)
        options = dict(entry.options or {})
        headers = dict(options.get("headers") or {})
        headers[TICK_HEADER] = tick_id
        headers[FENCING_HEADER] = token
        options["headers"] = headers
        stamped.options = options
        if entry.kwargs and TICK_HEADER in entry.kwargs:
            stamped.kwargs = {**entry.kwargs, TICK_HEADER: tick_id}
        logger.info("beat leader sends %s (token %s)", tick_id, token)
        return super().apply_entry(stamped, producer)

    def close(self) -> None:
        try:
            super().close()
        finally:
            try:
                if self.lease.release():
                    logger.info("beat %s released the lease", self.lease.holder_id)
            except Exception:
                logger.exception("beat %s: could not release the lease", self.lease.holder_id)

    @property
    def info(self) -> str:
        lease = (
            f"    . leader lease -> {self.lease.lease_key} "
            f"(ttl {self.lease.ttl_seconds:g}s, holder {self.lease.holder_id})"
        )
        base = super().info
        return f"{base}\n{lease}" if base else lease
