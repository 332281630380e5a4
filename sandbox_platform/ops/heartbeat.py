"""Beat-driven heartbeat: each tick recorded once cluster-wide, workers' liveness as TTL keys.

Celery beat sends one heartbeat task per interval, stamped with a tick id derived from the
schedule slot (:mod:`sandbox_platform.app.beat_scheduler`); whichever worker runs it calls
:meth:`Heartbeat.record_tick`. A tick delivered twice (two beats around a failover, a
redelivery after a lost worker) is recorded once:

1. ``SET NX`` of the tick id in Redis is the fast path (a duplicate stops there);
2. with a database, a :class:`~sandbox_platform.db.models.HeartbeatTick` row is inserted; its
   unique ``tick_id`` column is the real guard (the Redis claim may have expired).

Freshness is measured with Redis ``TIME`` only, never worker clocks. Workers announce
themselves with :meth:`Heartbeat.touch_worker`: a ``PSETEX``-style key that lives
``interval + 1`` seconds (as arq's ``health_check_key``), so a container probe can test one key.

Keys (``prefix`` = ``sp``)::

    sp:{heartbeat}:last           Redis time (microseconds) of the newest recorded tick
    sp:{heartbeat}:ticks          how many ticks were recorded
    sp:{heartbeat}:tick:<id>      claim of one tick id (expires after ``tick_ttl_seconds``)
    sp:{heartbeat}:worker:<name>  liveness of one worker: last-seen microseconds, TTL'd
    sp:{heartbeat}:workers        index of workers: zset, score = expiry in microseconds
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from sqlalchemy.exc import IntegrityError

from sandbox_platform.core.context import current_correlation_id
from sandbox_platform.core.redis_client import text as _redis_text
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import HeartbeatTick

__all__ = ["Heartbeat", "heartbeat_key"]

logger = logging.getLogger(__name__)

# KEYS[1] tick claim key, KEYS[2] last-tick key, KEYS[3] tick counter
# ARGV[1] claim ttl in milliseconds, ARGV[2] '1' to also mark the tick (no database), else '0'
# Returns {claimed 0|1, redis time in microseconds as a string}
_CLAIM = """
local t = redis.call('TIME')
local now = string.format('%d', t[1]) .. string.format('%06d', t[2])
if not redis.call('SET', KEYS[1], now, 'NX', 'PX', ARGV[1]) then
  return {0, now}
end
if ARGV[2] == '1' then
  local last = redis.call('GET', KEYS[2])
  if (not last) or tonumber(last) < tonumber(now) then
    redis.call('SET', KEYS[2], now)
  end
  redis.call('INCR', KEYS[3])
end
return {1, now}
"""

# KEYS[1] last-tick key, KEYS[2] tick counter
# ARGV[1] the tick's redis time in microseconds (as returned by the claim)
# Returns the tick count.
_MARK = """
local last = redis.call('GET', KEYS[1])
if (not last) or tonumber(last) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return redis.call('INCR', KEYS[2])
"""

# KEYS[1] worker liveness key, KEYS[2] worker index zset
# ARGV[1] worker name, ARGV[2] ttl in milliseconds
# Returns redis time in microseconds as a string.
_TOUCH = """
local t = redis.call('TIME')
local now = string.format('%d', t[1]) .. string.format('%06d', t[2])
redis.call('SET', KEYS[1], now, 'PX', ARGV[2])
local expires = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[2]) * 1000
expires = string.format('%d', expires)
redis.call('ZADD', KEYS[2], expires, ARGV[1])
return now
"""

# KEYS[1] worker index zset
# Returns {redis time in microseconds as a string, name, name, ...} of unexpired workers.
_WORKERS = """
local t = redis.call('TIME')
local now = string.format('%d', t[1]) .. string.format('%06d', t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
local out = {now}
for _, name in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  table.insert(out, name)
end
return out
"""

# KEYS[1] last tick. Returns {redis time seconds, microseconds, last tick or false}: the time
# of the node that holds the key, in one round trip (a Redis Cluster pipelines no TIME).
_AGE = """
local t = redis.call('TIME')
return {t[1], t[2], redis.call('GET', KEYS[1])}
"""


def heartbeat_key(prefix: str, *parts: str) -> str:
    """``<prefix>:{heartbeat}:<parts...>`` (one hash slot for every heartbeat key)."""
    return ":".join([f"{prefix}:{{heartbeat}}", *parts])


def _micros_to_seconds(value: Any) -> float:
    return int(_redis_text(value)) / 1_000_000


class Heartbeat:
    """Records beat ticks once and reports how fresh the last one is (Redis time)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        interval_seconds: float = 10.0,
        prefix: str = "sp",
        database_url: str | None = None,
        tick_ttl_seconds: float = 6 * 3600,
    ) -> None:
        if interval_seconds <= 0:
            raise ValueError(f"interval_seconds must be positive, got {interval_seconds!r}")
        self.client = client
        self.interval_seconds = float(interval_seconds)
        self.prefix = prefix
        self.database_url = database_url
        # Longer than the broker's visibility timeout, so a redelivered tick is still known.
        self.tick_ttl_seconds = tick_ttl_seconds
        self.last_key = heartbeat_key(prefix, "last")
        self.count_key = heartbeat_key(prefix, "ticks")
        self.workers_key = heartbeat_key(prefix, "workers")
        self._claim = client.register_script(_CLAIM)
        self._mark = client.register_script(_MARK)
        self._touch = client.register_script(_TOUCH)
        self._workers = client.register_script(_WORKERS)
        self._age = client.register_script(_AGE)

    # -- ticks -------------------------------------------------------------------------------

    def tick_key(self, tick_id: str) -> str:
        return heartbeat_key(self.prefix, "tick", tick_id)

    def worker_key(self, name: str) -> str:
        return heartbeat_key(self.prefix, "worker", name)

    @property
    def max_age(self) -> float:
        """Older than this (two intervals), the heartbeat is stale."""
        return 2 * self.interval_seconds

    def record_tick(self, tick_id: str, worker: str | None = None) -> bool:
        """Record tick ``tick_id``; True the first time cluster-wide, False for a duplicate.

        With a database the unique ``tick_id`` row decides. If the insert fails for another
        reason, the Redis claim is withdrawn and the error propagates, so a retry can record it.
        """
        if not tick_id:
            raise ValueError("tick_id must be a non-empty string")
        ttl_ms = max(1, int(self.tick_ttl_seconds * 1000))
        with_db = self.database_url is not None
        claimed, now = self._claim(
            keys=[self.tick_key(tick_id), self.last_key, self.count_key],
            args=[ttl_ms, "0" if with_db else "1"],
        )
        if int(claimed) != 1:
            logger.info("heartbeat tick %s already recorded", tick_id)
            return False
        if self.database_url is not None:
            try:
                inserted = self._insert_row(tick_id, _micros_to_seconds(now), worker)
            except Exception:
                self.client.delete(self.tick_key(tick_id))
                raise
            if not inserted:
                logger.info("heartbeat tick %s already in the database", tick_id)
                return False
            self._mark(keys=[self.last_key, self.count_key], args=[_redis_text(now)])
        return True

    def _insert_row(self, tick_id: str, redis_time: float, worker: str | None) -> bool:
        assert self.database_url is not None
        try:
            with session_scope(self.database_url) as session:
                session.add(
                    HeartbeatTick(
                        tick_id=tick_id,
                        redis_time=redis_time,
                        worker=worker,
                        correlation_id=current_correlation_id(),
                    )
                )
        except IntegrityError:
            return False
        return True

    def redis_time(self) -> float:
        """Redis server time in seconds."""
        seconds, micros = self.client.time()
        return int(seconds) + int(micros) / 1_000_000

    def last_tick_age(self) -> float | None:
        """Seconds since the newest recorded tick, by Redis time; None if none was recorded."""
        seconds, micros, last = self._age(keys=[self.last_key])
        if last is None:
            return None
        now = int(seconds) + int(micros) / 1_000_000
        return max(0.0, now - _micros_to_seconds(last))

    def tick_count(self) -> int:
        value = self.client.get(self.count_key)
        return int(_redis_text(value)) if value is not None else 0

    def is_healthy(self, max_age: float | None = None) -> bool:
        """True when the last tick is younger than ``max_age`` (default two intervals)."""
        age = self.last_tick_age()
        limit = self.max_age if max_age is None else max_age
        return age is not None and age < limit

    # -- workers -----------------------------------------------------------------------------

    def touch_worker(self, name: str, ttl_seconds: float | None = None) -> None:
        """Say worker ``name`` is alive for ``ttl_seconds`` (default ``interval + 1``)."""
        ttl = self.interval_seconds + 1 if ttl_seconds is None else ttl_seconds
        ttl_ms = max(1, int(ttl * 1000))
        self._touch(keys=[self.worker_key(name), self.workers_key], args=[name, ttl_ms])

    def workers(self) -> dict[str, float]:
        """Live workers and the seconds since each last touched its key (Redis time)."""
        reply = self._workers(keys=[self.workers_key])
        now = _micros_to_seconds(reply[0])
        names = [_redis_text(name) for name in reply[1:]]
        if not names:
            return {}
        seen = self.client.mget([self.worker_key(name) for name in names])
        return {
            name: max(0.0, now - _micros_to_seconds(value))
            for name, value in zip(names, seen, strict=True)
            if value is not None
        }

    def status(self) -> dict[str, Any]:
        """One snapshot for dashboards and readiness: ages in seconds, Redis time."""
        age = self.last_tick_age()
        return {
            "interval": self.interval_seconds,
            "max_age": self.max_age,
            "last_tick_age": age,
            "healthy": age is not None and age < self.max_age,
            "ticks": self.tick_count(),
            "workers": self.workers(),
        }
