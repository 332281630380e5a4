"""Cluster-wide alert throttling: one alert per kind+key per window, with a suppressed count.

In Redis, one script decides atomically: ``SET gate NX PX window`` admits the first alert of a
window; the others ``INCR`` a counter; the next admitted alert ``GETDEL``s the counter, so it
reports how many were held back since the previous one was sent. Both keys share a hash tag.
Without a client, the same logic runs in process (one worker only).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
import structlog

from sandbox_platform.core.redis_client import REDIS_ERRORS

__all__ = ["Throttle", "ThrottleDecision"]

log = structlog.get_logger("sandbox_platform.alerts")

# KEYS[1] gate key (exists while a window is open)
# KEYS[2] suppressed counter
# ARGV[1] window in milliseconds
# ARGV[2] counter time-to-live in milliseconds (a bound on leaked keys, >> window)
# returns {1, suppressed_before} when the alert is to be sent, {0, suppressed_so_far} if not
THROTTLE_LUA = """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  local held = redis.call('GETDEL', KEYS[2])
  return {1, tonumber(held) or 0}
end
local n = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {0, n}
"""
"""The throttle's Lua script (its KEYS, ARGV and return value in the comment above): the first
alert of a kind and key opens the window, the next ones in it are counted, not sent."""

COUNTER_TTL_SECONDS = 7 * 24 * 3600
_LOCAL_PRUNE_AT = 10_000


@dataclass(frozen=True)
class ThrottleDecision:
    send: bool
    suppressed: int  # when send: held back before this one; else: held back so far


class Throttle:
    """Admit one alert per ``kind`` + ``key`` per ``window_seconds``.

    With a Redis ``client`` the window holds across every process using the same ``prefix``.
    If Redis cannot be reached, a warning is logged and for ``redis_retry_seconds`` decisions
    are made in process: never lose an alert to a Redis outage, never wait on a dead Redis for
    every alert, and still damp a storm within this process. (How long one failing call takes
    is the client's own timeout/retry configuration.)
    """

    def __init__(
        self,
        client: redis.Redis | None = None,
        window_seconds: float = 60,
        prefix: str = "sp",
        *,
        clock: Callable[[], float] = time.monotonic,
        redis_retry_seconds: float = 5.0,
    ) -> None:
        if window_seconds <= 0:
            raise ValueError(f"throttle window must be > 0 seconds, got {window_seconds}")
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"throttle prefix must be non-empty without braces: {prefix!r}")
        self.client = client
        self.window_seconds = float(window_seconds)
        self.prefix = prefix
        self._window_ms = max(1, round(self.window_seconds * 1000))
        self._counter_ttl_ms = max(self._window_ms * 10, COUNTER_TTL_SECONDS * 1000)
        self._script = client.register_script(THROTTLE_LUA) if client is not None else None
        self._clock = clock
        self._lock = threading.Lock()
        self._gates: dict[str, float] = {}  # in-process: key -> window end
        self._held: dict[str, int] = {}
        self.redis_retry_seconds = redis_retry_seconds
        self._redis_down_until = float("-inf")

    def keys(self, kind: str, key: str) -> tuple[str, str]:
        """The Redis keys for one kind+key: gate and suppressed counter (one hash slot)."""
        tag = f"{{{kind}:{key}}}"
        return f"{self.prefix}:alert:{tag}:gate", f"{self.prefix}:alert:{tag}:suppressed"

    def check(self, kind: str, key: str | None) -> ThrottleDecision:
        """Decide for one alert; counts it as suppressed when not admitted."""
        gate, counter = self.keys(kind, key or "")
        if self._script is None:
            return self._check_local(gate)
        if self._clock() < self._redis_down_until:
            return self._check_local(gate)
        try:
            send, count = self._script(
                keys=[gate, counter], args=[self._window_ms, self._counter_ttl_ms]
            )
        except REDIS_ERRORS as exc:
            self._redis_down_until = self._clock() + self.redis_retry_seconds
            log.warning(
                "alert_throttle_unavailable",
                kind=kind,
                key=key,
                error=repr(exc),
                fallback="in-process",
                retry_in=self.redis_retry_seconds,
            )
            return self._check_local(gate)
        return ThrottleDecision(bool(int(send)), int(count))

    def _check_local(self, gate: str) -> ThrottleDecision:
        now = self._clock()
        with self._lock:
            end = self._gates.get(gate)
            if end is None or now >= end:
                if len(self._gates) >= _LOCAL_PRUNE_AT:
                    self._prune(now)
                self._gates[gate] = now + self.window_seconds
                return ThrottleDecision(True, self._held.pop(gate, 0))
            held = self._held[gate] = self._held.get(gate, 0) + 1
            return ThrottleDecision(False, held)

    def _prune(self, now: float) -> None:
        """Forget closed windows with nothing held back (bounds in-process memory)."""
        for gate, end in list(self._gates.items()):
            if now >= end and gate not in self._held:
                del self._gates[gate]
