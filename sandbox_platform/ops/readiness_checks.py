"""The readiness checks, one function each, and the reason codes they fail with.

A check takes a :class:`CheckContext` and returns the message of a pass, or raises
:class:`CheckFailed` with a reason code and a message. The runner in
:mod:`sandbox_platform.ops.readiness` times each check, turns any other exception into a failure
with the check's own code (``EXTRA_MISSING`` for a missing extra), and redacts every message.
Checks that need a service they cannot reach fail with that service's code
(``REDIS_UNREACHABLE``, ``DATABASE_UNREACHABLE``, ``BROKER_UNREACHABLE``), so a report with
Redis down reads "Redis is down", not "the governor has no limits".
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

import redis
import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from celery import Celery
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from sandbox_platform.coordination.governor import Governor
from sandbox_platform.core.errors import GovernorUnavailable
from sandbox_platform.core.extras import configured_missing, require_database_driver
from sandbox_platform.core.redis_client import cluster_client, is_cluster_url, redis_url
from sandbox_platform.core.settings import Mode, Settings
from sandbox_platform.db.migrate import VERSION_TABLE, head_revision
from sandbox_platform.guards.base import guard_options
from sandbox_platform.guards.dry_run import DryRunLock, current_lock
from sandbox_platform.ops.heartbeat import Heartbeat
from sandbox_platform.ops.secret_usage import secret_key_usage

__all__ = [
    "BEAT_STALE",
    "BROKER_UNREACHABLE",
    "CANARY_TASK",
    "CANARY_TIMEOUT",
    "CHECKS",
    "CHECK_NAMES",
    "CONFIG_COUNTDOWN_EXCEEDS_VISIBILITY",
    "CONFIG_LATE_ACKS_OFF",
    "DATABASE_UNREACHABLE",
    "DRY_RUN_DISARMED",
    "EXTRA_MISSING",
    "GOVERNOR_LIMIT_MISSING",
    "MIGRATIONS_BEHIND",
    "NO_WORKER",
    "OK",
    "REASON_CODES",
    "REDIS_UNREACHABLE",
    "SANDBOX_NOT_ISOLATED",
    "SECRET_KEYS_MISSING",
    "SECRET_KEY_MISSING",
    "CheckContext",
    "CheckFailed",
    "CheckFunction",
    "canary_key",
]

#: The task the worker check sends (registered on every platform app) and the key it sets.
CANARY_TASK = "sandbox_platform.canary"


def canary_key(prefix: str, token: str) -> str:
    return f"{prefix}:canary:{token}"


OK = "OK"
EXTRA_MISSING = "EXTRA_MISSING"
DATABASE_UNREACHABLE = "DATABASE_UNREACHABLE"
MIGRATIONS_BEHIND = "MIGRATIONS_BEHIND"
REDIS_UNREACHABLE = "REDIS_UNREACHABLE"
BROKER_UNREACHABLE = "BROKER_UNREACHABLE"
NO_WORKER = "NO_WORKER"
CANARY_TIMEOUT = "CANARY_TIMEOUT"
BEAT_STALE = "BEAT_STALE"
CONFIG_LATE_ACKS_OFF = "CONFIG_LATE_ACKS_OFF"
CONFIG_COUNTDOWN_EXCEEDS_VISIBILITY = "CONFIG_COUNTDOWN_EXCEEDS_VISIBILITY"
SANDBOX_NOT_ISOLATED = "SANDBOX_NOT_ISOLATED"
DRY_RUN_DISARMED = "DRY_RUN_DISARMED"
GOVERNOR_LIMIT_MISSING = "GOVERNOR_LIMIT_MISSING"
SECRET_KEY_MISSING = "SECRET_KEY_MISSING"  # noqa: S105  (a reason code)
SECRET_KEYS_MISSING = "SECRET_KEYS_MISSING"  # noqa: S105

#: Every failure code, in check order.
REASON_CODES = (
    EXTRA_MISSING,
    DATABASE_UNREACHABLE,
    MIGRATIONS_BEHIND,
    REDIS_UNREACHABLE,
    BROKER_UNREACHABLE,
    NO_WORKER,
    CANARY_TIMEOUT,
    BEAT_STALE,
    CONFIG_LATE_ACKS_OFF,
    CONFIG_COUNTDOWN_EXCEEDS_VISIBILITY,
    SANDBOX_NOT_ISOLATED,
    DRY_RUN_DISARMED,
    GOVERNOR_LIMIT_MISSING,
    SECRET_KEY_MISSING,
    SECRET_KEYS_MISSING,
)


class CheckFailed(Exception):
    """Raised by a check: it failed with reason ``code``."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class CheckContext:
    """What the checks of one run share: settings, timeout, and lazily built clients.

    The Redis client is new (not the process's cached one) with socket timeouts equal to the
    check timeout and no retries, so a check against a dead Redis fails fast. The Celery app
    comes from ``app_factory``, called only if a check needs it. ``dry_run_lock`` is the lock
    the dry-run check inspects (default: the process's).
    """

    def __init__(
        self,
        settings: Settings,
        timeout: float,
        app_factory: Callable[[], Celery],
        dry_run_lock: DryRunLock | None = None,
    ) -> None:
        self.settings = settings
        self.timeout = timeout
        self.dry_run_lock = dry_run_lock
        self._app_factory = app_factory
        self._app: Celery | None = None
        self._redis: redis.Redis | None = None
        self._engine: sa.Engine | None = None

    @property
    def app(self) -> Celery:
        if self._app is None:
            self._app = self._app_factory()
        return self._app

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            url = redis_url(self.settings)
            if is_cluster_url(url):
                self._redis = cluster_client(
                    url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
                )
                return self._redis
            if url.startswith("redis+socket://"):
                url = "unix://" + url.removeprefix("redis+socket://")
            self._redis = redis.Redis.from_url(
                url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0),
            )
        return self._redis

    @property
    def engine(self) -> sa.Engine:
        """An engine of its own for the mode's database: connect timeout, no pool."""
        if self._engine is None:
            require_database_driver(self.settings.active_database_url)  # EXTRA_MISSING
            url = make_url(self.settings.active_database_url)
            connect_args: dict[str, Any] = {"connect_timeout": max(1, math.ceil(self.timeout))}
            if url.get_backend_name() == "sqlite":
                connect_args = {"timeout": self.timeout}
            elif url.drivername == "postgresql":
                url = url.set(drivername="postgresql+psycopg")
            self._engine = sa.create_engine(url, poolclass=NullPool, connect_args=connect_args)
        return self._engine

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
            self._redis = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


CheckFunction = Callable[[CheckContext], str]


def _one_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)  # SQLAlchemy wraps the driver's error
    text = str(orig if orig is not None else exc) or type(exc).__name__
    return " ".join(text.split())[:400]


@contextmanager
def _needs_redis() -> Iterator[None]:
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise CheckFailed(REDIS_UNREACHABLE, f"Redis unreachable: {_one_line(exc)}") from exc


@contextmanager
def _needs_database() -> Iterator[None]:
    try:
        yield
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise CheckFailed(DATABASE_UNREACHABLE, f"database unreachable: {_one_line(exc)}") from exc


# -- the checks --------------------------------------------------------------------------------


def check_extras(ctx: CheckContext) -> str:
    if missing := configured_missing(ctx.settings):
        raise CheckFailed(EXTRA_MISSING, "; ".join(map(str, missing)))
    return "what the settings turn on is installed"


def check_database(ctx: CheckContext) -> str:
    try:
        with ctx.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as exc:
        raise CheckFailed(DATABASE_UNREACHABLE, _one_line(exc)) from exc
    return f"{ctx.settings.mode.value} database answers"


def check_migrations(ctx: CheckContext) -> str:
    head = head_revision(ctx.settings.active_database_url)
    with _needs_database(), ctx.engine.connect() as conn:
        migration = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        current = migration.get_current_revision()
    if current != head:
        raise CheckFailed(
            MIGRATIONS_BEHIND,
            f"database at revision {current or 'none (empty)'}, code head is {head}; "
            "run `sandbox-platform db upgrade`",
        )
    return f"at head {head}"


def check_redis(ctx: CheckContext) -> str:
    try:
        ctx.redis.ping()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise CheckFailed(REDIS_UNREACHABLE, _one_line(exc)) from exc
    return "PING answered"


def _ensure_broker(ctx: CheckContext) -> None:
    try:
        with ctx.app.connection_for_write() as conn:
            conn.ensure_connection(
                max_retries=1,
                interval_start=0,
                interval_step=0,
                timeout=ctx.timeout,  # type: ignore[arg-type]  # the stub says int; seconds
            )
    except Exception as exc:
        raise CheckFailed(BROKER_UNREACHABLE, f"broker unreachable: {_one_line(exc)}") from exc


def check_broker(ctx: CheckContext) -> str:
    _ensure_broker(ctx)
    return "broker connection established"


def check_worker(ctx: CheckContext) -> str:
    _ensure_broker(ctx)  # control.ping would retry a dead broker for a long time
    replies = ctx.app.control.ping(timeout=ctx.timeout, limit=1) or []
    names = sorted(name for reply in replies for name in reply)
    if not names:
        raise CheckFailed(NO_WORKER, f"no worker answered ping within {ctx.timeout:g}s")
    token = uuid.uuid4().hex
    key = canary_key(ctx.settings.key_prefix, token)
    ctx.app.send_task(CANARY_TASK, args=[token], expires=max(60.0, 2 * ctx.timeout))
    started = time.monotonic()
    deadline = started + ctx.timeout
    with _needs_redis():
        while not ctx.redis.exists(key):
            if time.monotonic() >= deadline:
                raise CheckFailed(
                    CANARY_TIMEOUT,
                    f"{', '.join(names)} answered ping, but the canary task did not come "
                    f"back within {ctx.timeout:g}s",
                )
            time.sleep(0.05)
        ctx.redis.delete(key)
    elapsed = time.monotonic() - started
    return f"{', '.join(names)} answered ping; canary back in {elapsed * 1000:.0f} ms"


def check_beat(ctx: CheckContext) -> str:
    heartbeat = Heartbeat(
        ctx.redis,
        interval_seconds=ctx.settings.heartbeat_interval,
        prefix=ctx.settings.key_prefix,
    )
    with _needs_redis():
        age = heartbeat.last_tick_age()
    limit = heartbeat.max_age
    if age is None:
        raise CheckFailed(BEAT_STALE, "no heartbeat tick was ever recorded (is beat running?)")
    if age > limit:
        raise CheckFailed(
            BEAT_STALE, f"last heartbeat tick {age:.1f}s ago, more than 2 intervals ({limit:g}s)"
        )
    return f"last heartbeat tick {age:.1f}s ago (limit {limit:g}s)"


def _guarded_tasks(app: Celery) -> list[tuple[str, Mapping[str, Any]]]:
    """``(name, guard options)`` of every guarded task of ``app``, by name."""
    found = []
    for task in list(app.tasks.values()):
        options = guard_options(task)
        if options is not None:
            found.append((str(task.name), options))
    return sorted(found, key=lambda item: item[0])


def check_config(ctx: CheckContext) -> str:
    conf = ctx.app.conf
    off = [
        name
        for name in ("task_acks_late", "task_reject_on_worker_lost")
        if not conf.get(name, False)
    ]
    if off:
        raise CheckFailed(
            CONFIG_LATE_ACKS_OFF, f"{', '.join(off)} off: a lost worker would lose its job"
        )
    transport = conf.get("broker_transport_options") or {}
    visibility = float(transport.get("visibility_timeout", ctx.settings.redelivery_timeout))
    timeout_name = ctx.settings.redelivery_timeout_name
    tasks = _guarded_tasks(ctx.app)
    too_long = [
        finding for name, options in tasks for finding in _beyond(name, options, visibility)
    ]
    if too_long:
        raise CheckFailed(
            CONFIG_COUNTDOWN_EXCEEDS_VISIBILITY,
            f"not below the {timeout_name} ({visibility:g}s; the platform caps its own "
            "delays, but the broker redelivers what runs or waits longer): " + ", ".join(too_long),
        )
    return f"late acks on; {len(tasks)} guarded task(s) retry and lease below {visibility:g}s"


def _beyond(name: str, options: Mapping[str, Any], visibility: float) -> list[str]:
    """What of a task's delays reaches the broker's visibility timeout."""
    found = []
    retry = options.get("retry")
    if retry is not None and retry.cap >= visibility:
        found.append(f"{name} (retry cap {retry.cap:g}s)")
    lease = options.get("idempotency_lease")
    if options.get("idempotency_key") and lease is not None and lease >= visibility:
        found.append(f"{name} (idempotency lease {lease:g}s)")
    return found


def check_isolation(ctx: CheckContext) -> str:
    if not ctx.settings.isolated:
        raise CheckFailed(
            SANDBOX_NOT_ISOLATED, "the sandbox and live database URLs name the same database"
        )
    if not ctx.settings.live_database_url:
        return "no live database configured"
    return "sandbox and live databases differ"


def check_dry_run(ctx: CheckContext) -> str:
    if ctx.settings.mode is Mode.LIVE:
        return "live mode: pass-through"
    lock = ctx.dry_run_lock or current_lock()
    if not lock.armed:
        raise CheckFailed(
            DRY_RUN_DISARMED,
            f"sandbox mode, but the dry-run lock is in {lock.mode.value} mode: "
            "irreversible actions would run for real",
        )
    egress = ctx.settings.egress_mode
    return f"armed: irreversible actions are intercepted; egress guard: {egress}"


def check_governor(ctx: CheckContext) -> str:
    declared: set[str] = set()
    for _name, options in _guarded_tasks(ctx.app):
        declared.update(template for template, _cost in options.get("governor", ()))
    fixed = sorted(r for r in declared if "{" not in r)
    templated = sorted(r for r in declared if "{" in r)
    governor = Governor(ctx.redis, ctx.settings.key_prefix)
    with _needs_redis():
        missing = [resource for resource in fixed if not _has_limits(governor, resource)]
    note = f"; templated, not checkable: {', '.join(templated)}" if templated else ""
    if missing:
        raise CheckFailed(GOVERNOR_LIMIT_MISSING, f"no limit for {', '.join(missing)}{note}")
    if not fixed:
        return f"no fixed governor resources declared{note}"
    return f"limits set for {', '.join(fixed)}{note}"


def _has_limits(governor: Governor, resource: str) -> bool:
    try:
        return bool(governor.limits(resource))
    except GovernorUnavailable as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        raise CheckFailed(REDIS_UNREACHABLE, f"Redis unreachable: {_one_line(cause)}") from exc


def check_secret_keys(ctx: CheckContext) -> str:
    """Every key id sealing a stored or queued argument is in the ring (ops/secret_usage.py);
    a live app with secret arguments has its keys."""
    with _needs_database(), _needs_redis():
        usage = secret_key_usage(ctx.settings, ctx.app, ctx.engine, ctx.redis, ctx.timeout)
    if usage.keys_problem is not None:
        raise CheckFailed(SECRET_KEYS_MISSING, usage.keys_problem_message())
    if usage.missing:
        raise CheckFailed(SECRET_KEY_MISSING, usage.missing_message())
    return usage.summary()


#: name -> (the check's own failure code, the function), in run order.
CHECKS: Mapping[str, tuple[str, CheckFunction]] = MappingProxyType(
    {
        "extras": (EXTRA_MISSING, check_extras),
        "database": (DATABASE_UNREACHABLE, check_database),
        "migrations": (MIGRATIONS_BEHIND, check_migrations),
        "redis": (REDIS_UNREACHABLE, check_redis),
        "broker": (BROKER_UNREACHABLE, check_broker),
        "worker": (NO_WORKER, check_worker),
        "beat": (BEAT_STALE, check_beat),
        "config": (CONFIG_LATE_ACKS_OFF, check_config),
        "isolation": (SANDBOX_NOT_ISOLATED, check_isolation),
        "dry_run": (DRY_RUN_DISARMED, check_dry_run),
        "governor": (GOVERNOR_LIMIT_MISSING, check_governor),
        "secret_keys": (SECRET_KEY_MISSING, check_secret_keys),
    }
)

CHECK_NAMES = tuple(CHECKS)
