"""A leader lease in Redis with fencing tokens: one active Celery beat among many.

Why a lease of our own rather than RedBeat (``celery-redbeat``):

* no extra dependency, and the beat schedule stays in code (``beat_schedule``), reviewed and
  versioned with the tasks it runs, instead of living as mutable state in Redis;
* every acquisition returns a **fencing token** (a counter ``INCR``-ed per acquisition that
  never goes backwards), so anything the leader writes can be tagged with it and a stale
  leader's late write can be refused downstream; RedBeat's lock has no token;
* time comes from Redis (``TIME`` inside the scripts, ``PX`` expiry on the server), never from
  the contenders' clocks, as the design requires for every lease;
* a standby takes over within ``ttl`` plus one poll, and the lease is tiny to reason about:
  three short scripts, each one atomic decision.

Keys (``prefix`` = ``sp``, name = ``beat``), hash-tagged so a Redis Cluster keeps them in one
slot::

    sp:{leader:beat}:lease   hash {holder, token}, expires after ttl unless renewed
    sp:{leader:beat}:fence   the fencing counter; never expires

The holder believes it leads only until ``local start of the request + ttl``: the server
starts its expiry clock later than that, so a holder that stops renewing steps down before
the server would let anyone else in (clock *rate* drift aside; downstream dedup by tick id and
database constraints are the real guard).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis

from sandbox_platform.core.redis_client import text as _redis_text

__all__ = ["LeaderLease", "LeaseInfo", "default_holder_id", "lease_keys"]

logger = logging.getLogger(__name__)

# KEYS[1] lease hash, KEYS[2] fence counter
# ARGV[1] holder id, ARGV[2] ttl in milliseconds
# Returns {acquired 0|1, token (current holder's when not acquired, 0 if none),
#          redis time seconds, redis time microseconds}
# A holder that already holds the lease extends it and keeps its token.
_ACQUIRE = """
local t = redis.call('TIME')
local holder = redis.call('HGET', KEYS[1], 'holder')
if not holder then
  local token = redis.call('INCR', KEYS[2])
  redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'token', token)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, token, t[1], t[2]}
end
local token = tonumber(redis.call('HGET', KEYS[1], 'token') or '0')
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, token, t[1], t[2]}
end
return {0, token, t[1], t[2]}
"""

# KEYS[1] lease hash
# ARGV[1] holder id, ARGV[2] fencing token, ARGV[3] ttl in milliseconds
# Returns {renewed 0|1, redis time seconds, redis time microseconds}
_RENEW = """
local t = redis.call('TIME')
local holder = redis.call('HGET', KEYS[1], 'holder')
if holder == ARGV[1] and redis.call('HGET', KEYS[1], 'token') == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {1, t[1], t[2]}
end
return {0, t[1], t[2]}
"""

# KEYS[1] lease hash
# ARGV[1] holder id, ARGV[2] fencing token
# Returns 1 when this holder's lease was deleted, 0 when it was not (or no longer) ours.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'holder') == ARGV[1]
   and redis.call('HGET', KEYS[1], 'token') == ARGV[2] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def lease_keys(name: str, prefix: str = "sp") -> tuple[str, str]:
    """The (lease, fence) keys of the lease called ``name``."""
    tag = f"{prefix}:{{leader:{name}}}"
    return f"{tag}:lease", f"{tag}:fence"


def default_holder_id() -> str:
    """``host:pid:random``: unique per process, and says which process holds the lease."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class LeaseInfo:
    """Who holds a lease right now, as Redis sees it."""

    holder_id: str
    token: int
    ttl_seconds: float


def _redis_seconds(seconds: Any, micros: Any) -> float:
    return int(_redis_text(seconds)) + int(_redis_text(micros)) / 1_000_000


class LeaderLease:
    """A named lease in Redis; at most one holder at a time, each acquisition fenced.

    >>> lease = LeaderLease(client, "beat", holder_id="beat-a", ttl_seconds=15)
    >>> token = lease.try_acquire()      # int when we lead, None when someone else does
    >>> lease.renew()                    # every ttl/3 or more often; False: we lost it
    >>> lease.release()

    Thread-safe: one lock guards the local view of the lease.
    """

    def __init__(
        self,
        client: redis.Redis,
        name: str,
        *,
        holder_id: str | None = None,
        ttl_seconds: float,
        prefix: str = "sp",
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds!r}")
        self.client = client
        self.name = name
        self.holder_id = holder_id or default_holder_id()
        self.ttl_seconds = float(ttl_seconds)
        self.prefix = prefix
        self.lease_key, self.fence_key = lease_keys(name, prefix)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._lock = threading.Lock()
        self._token: int | None = None
        self._valid_until = 0.0  # time.monotonic() deadline of our belief that we lead
        #: Redis time minus local wall time, measured at the last acquire/renew.
        self.clock_offset = 0.0

    @property
    def ttl_ms(self) -> int:
        return max(1, int(self.ttl_seconds * 1000))

    @property
    def token(self) -> int | None:
        """Our fencing token while we lead, else None."""
        with self._lock:
            return self._token if self._valid_locked() else None

    @property
    def is_leader(self) -> bool:
        """True while we hold the lease by our own (conservative) clock."""
        with self._lock:
            return self._valid_locked()

    def _valid_locked(self) -> bool:
        return self._token is not None and time.monotonic() < self._valid_until

    def _note_time(self, seconds: Any, micros: Any, sent_at_wall: float) -> None:
        self.clock_offset = _redis_seconds(seconds, micros) - sent_at_wall

    def try_acquire(self) -> int | None:
        """Take the lease if free (or extend it if ours); return our fencing token or None."""
        started = time.monotonic()
        wall = time.time()
        acquired, token, seconds, micros = self._acquire(
            keys=[self.lease_key, self.fence_key], args=[self.holder_id, self.ttl_ms]
        )
        self._note_time(seconds, micros, wall)
        with self._lock:
            if int(acquired) == 1:
                if self._token != int(token):
                    logger.info(
                        "lease %s acquired by %s with token %s",
                        self.name,
                        self.holder_id,
                        token,
                    )
                self._token = int(token)
                self._valid_until = started + self.ttl_seconds
                return self._token
            self._token = None
            self._valid_until = 0.0
            return None

    def renew(self) -> bool:
        """Extend the lease if we still hold it (same holder and token); False otherwise."""
        with self._lock:
            token = self._token
        if token is None:
            return False
        started = time.monotonic()
        wall = time.time()
        renewed, seconds, micros = self._renew(
            keys=[self.lease_key], args=[self.holder_id, token, self.ttl_ms]
        )
        self._note_time(seconds, micros, wall)
        with self._lock:
            if int(renewed) == 1 and self._token == token:
                self._valid_until = started + self.ttl_seconds
                return True
            if self._token == token:
                logger.warning("lease %s lost by %s (token %s)", self.name, self.holder_id, token)
                self._token = None
                self._valid_until = 0.0
            return False

    def release(self) -> bool:
        """Give the lease up if we hold it; True when Redis deleted it."""
        with self._lock:
            token, self._token, self._valid_until = self._token, None, 0.0
        if token is None:
            return False
        return int(self._release(keys=[self.lease_key], args=[self.holder_id, token])) == 1

    def holder_info(self) -> LeaseInfo | None:
        """The current holder as Redis sees it, or None when the lease is free."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hmget(self.lease_key, ["holder", "token"])
        pipe.pttl(self.lease_key)
        (holder, token), pttl = pipe.execute()
        if holder is None:
            return None
        return LeaseInfo(
            holder_id=_redis_text(holder),
            token=int(_redis_text(token or b"0")),
            ttl_seconds=max(int(pttl), 0) / 1000,
        )

    def current_holder(self) -> str | None:
        """The holder id of the lease right now, or None when it is free."""
        info = self.holder_info()
        return info.holder_id if info else None

    def redis_now(self) -> float:
        """Our best estimate of Redis time: local wall time plus the last measured offset."""
        return time.time() + self.clock_offset
