"""What the dashboard reads, built once per dashboard process: the settings, the user's Celery
app (its queues; replays publish through it), Redis clients, and a readiness report cached
for a few seconds (a report runs real checks: a canary job, database and broker probes)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from celery import Celery
from redis import Redis

from sandbox_platform.core.redis_client import get_redis, redis_url
from sandbox_platform.core.settings import Settings
from sandbox_platform.ops.backlog import QueueSource, broker_queues, known_queues
from sandbox_platform.ops.readiness import ReadinessChecker, Report

__all__ = ["DashboardState"]


@dataclass
class DashboardState:
    settings: Settings
    app: Celery
    readiness_ttl: float = 5.0
    _report: Report | None = None
    _report_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def database_url(self) -> str:
        return self.settings.active_database_url

    @property
    def redis(self) -> Redis:
        return get_redis(redis_url(self.settings))

    @property
    def broker(self) -> QueueSource:
        return broker_queues(self.settings)

    @property
    def queues(self) -> list[str]:
        return known_queues(self.app)

    def readiness(self, max_age: float | None = None) -> Report:
        """The newest report, run again when older than ``max_age`` (default the TTL)."""
        limit = self.readiness_ttl if max_age is None else max_age
        with self._lock:
            if self._report is None or time.monotonic() - self._report_at > limit:
                self._report = ReadinessChecker(self.settings, self.app).run()
                self._report_at = time.monotonic()
            return self._report
