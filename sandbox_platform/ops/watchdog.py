"""The staleness watchdog: every worker checks the heartbeat, one alert per transition.

Every worker runs :meth:`BeatWatchdog.check` on a timer. The decision and the state change
happen in one Lua script with Redis time, so however many workers check at once:

* healthy -> stale  fires one ``critical`` alert, kind ``heartbeat_stale``, cluster-wide;
* stale -> healthy  fires one ``info`` alert, kind ``heartbeat_recovered``.

"Stale" means the last tick is older than two intervals, or no tick was ever recorded and the
grace period since the first watchdog check in the cluster has passed. A watchdog also stays
quiet for ``startup_grace_seconds`` after it is built (a worker's start-up, before any beat
has ticked; ``SANDBOX_PLATFORM_HEARTBEAT_GRACE_SECONDS``, default 2 x the interval): a
worker that starts with the beat is not a page.

If the alert callback raises, the transition is undone (compare-and-set, only if nobody
moved the state since) and the error propagates, so the next check tries again rather than
losing the alert.

Keys (``prefix`` = ``sp``)::

    sp:{heartbeat}:watchdog:state  'healthy' | 'stale' (absent = healthy)
    sp:{heartbeat}:watchdog:since  Redis time (microseconds) of the first check
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from sandbox_platform.core.redis_client import text as _redis_text
from sandbox_platform.ops.heartbeat import Heartbeat, heartbeat_key

__all__ = [
    "KIND_RECOVERED",
    "KIND_STALE",
    "AlertCallback",
    "BeatWatchdog",
]

logger = logging.getLogger(__name__)

KIND_STALE = "heartbeat_stale"
KIND_RECOVERED = "heartbeat_recovered"

#: alert(severity, kind, message, context)
AlertCallback = Callable[[str, str, str, dict[str, Any]], None]

# KEYS[1] last-tick key, KEYS[2] watchdog state, KEYS[3] watchdog first-check time
# ARGV[1] max age in microseconds, ARGV[2] grace in microseconds
# Returns {transition: 'stale' | 'recovered' | '', last tick age in microseconds or '-1'}
_CHECK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('SET', KEYS[3], string.format('%d', now), 'NX')
local since = tonumber(redis.call('GET', KEYS[3]))
local last = redis.call('GET', KEYS[1])
local age = -1
local stale
if last then
  age = now - tonumber(last)
  stale = age > tonumber(ARGV[1])
elseif now - since > tonumber(ARGV[2]) then
  stale = true
else
  return {'', '-1'}
end
local state = redis.call('GET', KEYS[2])
if stale and state ~= 'stale' then
  redis.call('SET', KEYS[2], 'stale')
  return {'stale', string.format('%d', age)}
end
if (not stale) and state == 'stale' then
  redis.call('SET', KEYS[2], 'healthy')
  return {'recovered', string.format('%d', age)}
end
return {'', string.format('%d', age)}
"""

# KEYS[1] watchdog state
# ARGV[1] the state we set, ARGV[2] the state to put back
# Returns 1 when put back, 0 when someone changed it meanwhile.
_UNDO = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


class BeatWatchdog:
    """Alerts once when beat's heartbeat goes stale and once when it recovers."""

    def __init__(
        self,
        heartbeat: Heartbeat,
        client: redis.Redis,
        *,
        alert: AlertCallback,
        prefix: str = "sp",
        max_age_seconds: float | None = None,
        grace_seconds: float | None = None,
        name: str | None = None,
        startup_grace_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.heartbeat = heartbeat
        self.client = client
        self.alert = alert
        self.prefix = prefix
        self.max_age_seconds = heartbeat.max_age if max_age_seconds is None else max_age_seconds
        self.grace_seconds = self.max_age_seconds if grace_seconds is None else grace_seconds
        self.name = name or uuid.uuid4().hex[:8]
        self._clock = clock
        self._quiet_until = clock() + startup_grace_seconds
        self.state_key = heartbeat_key(prefix, "watchdog", "state")
        self.since_key = heartbeat_key(prefix, "watchdog", "since")
        self._check = client.register_script(_CHECK)
        self._undo = client.register_script(_UNDO)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> str | None:
        """One check; returns the alert kind this call fired, or None (always None during
        the start-up grace)."""
        if self._clock() < self._quiet_until:
            return None
        transition, age_us = self._check(
            keys=[self.heartbeat.last_key, self.state_key, self.since_key],
            args=[int(self.max_age_seconds * 1_000_000), int(self.grace_seconds * 1_000_000)],
        )
        transition = _redis_text(transition)
        if not transition:
            return None
        age_micros = int(_redis_text(age_us))
        age = None if age_micros < 0 else age_micros / 1_000_000
        context: dict[str, Any] = {
            "last_tick_age": age,
            "max_age": self.max_age_seconds,
            "interval": self.heartbeat.interval_seconds,
            "watchdog": self.name,
        }
        if transition == "stale":
            severity, kind, new_state, old_state = "critical", KIND_STALE, "stale", "healthy"
            message = (
                "beat heartbeat is stale: no tick recorded yet"
                if age is None
                else f"beat heartbeat is stale: last tick {age:.1f}s ago "
                f"(limit {self.max_age_seconds:.1f}s)"
            )
        else:
            severity, kind, new_state, old_state = "info", KIND_RECOVERED, "healthy", "stale"
            message = f"beat heartbeat recovered: last tick {age or 0.0:.1f}s ago"
        try:
            self.alert(severity, kind, message, context)
        except Exception:
            self._undo(keys=[self.state_key], args=[new_state, old_state])
            raise
        logger.warning("watchdog %s fired %s: %s", self.name, kind, message)
        return kind

    # -- background thread -------------------------------------------------------------------

    def start(self, interval: float | None = None) -> None:
        """Run :meth:`check` every ``interval`` seconds (default: heartbeat interval / 2)."""
        if self._thread is not None and self._thread.is_alive():
            return
        period = self.heartbeat.interval_seconds / 2 if interval is None else interval
        if period <= 0:
            raise ValueError(f"interval must be positive, got {period!r}")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run,
            args=(period,),
            name=f"sandbox-platform-watchdog-{self.name}",
            daemon=True,
        )
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the thread and wait for it (up to ``timeout`` seconds)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self, period: float) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:
                logger.exception("watchdog %s: heartbeat check failed", self.name)
            self._stop.wait(period)
