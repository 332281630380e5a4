"""One typed settings object, read from the environment and validated once.

Every variable has the prefix ``SANDBOX_PLATFORM_``. :func:`load_settings` turns pydantic's
multi-line validation report into a :class:`~sandbox_platform.core.errors.SettingsError` whose
message is one line naming the variable, which the CLI prints before exiting with code 2.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sandbox_platform.core.broker_kind import (
    REDIS_SCHEMES,
    BrokerKind,
    broker_kind,
    check_broker_url,
    check_redis_url,
)
from sandbox_platform.core.cluster_url import CLUSTER_SCHEMES, check_cluster_url, is_cluster_url
from sandbox_platform.core.database_identity import database_identity
from sandbox_platform.core.errors import IsolationError, SettingsError
from sandbox_platform.core.live_requirements import EXAMPLE_APP, check_live_settings
from sandbox_platform.core.redaction import MASK, redact_value
from sandbox_platform.core.secret_keys import check_fingerprint_key, check_key_ring

__all__ = [
    "ENV_PREFIX",
    "SECRET_SETTINGS",
    "Mode",
    "Settings",
    "app_name_problem",
    "database_identity",
    "load_settings",
]

ENV_PREFIX = "SANDBOX_PLATFORM_"

_ENFORCE_ISOLATION: ContextVar[bool] = ContextVar("sp_enforce_isolation", default=True)


class Mode(StrEnum):
    """Sandbox intercepts every irreversible action; live lets it through."""

    SANDBOX = "sandbox"
    LIVE = "live"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "sandbox-platform"


class Settings(BaseSettings):
    """Everything the platform can be told. Build it with :func:`load_settings`."""

    # An empty variable is an unset one: compose's ${VAR:-} and a Secret's "" key mean "none".
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        frozen=True,
        validate_default=True,
        env_ignore_empty=True,
    )

    mode: Mode = Field(default=Mode.SANDBOX, description="sandbox (default) or live")
    app: str | None = Field(
        default=None,
        description="module with your Celery app and tasks (`pkg.module` or `pkg.module:attr`); "
        f"unset: the bundled example `{EXAMPLE_APP}` in sandbox mode, an error in live mode",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis for coordination (redis+cluster://: a Redis Cluster); "
        "unset: an embedded redis-server in sandbox mode, an error in live mode",
    )
    broker_url: str | None = Field(
        default=None, description="Celery broker: Redis or RabbitMQ (amqp://); unset: redis_url"
    )
    result_backend: str | None = Field(
        default=None, description="Celery result backend; unset: none (fire-and-forget)"
    )
    database_url: str | None = Field(
        default=None, description="sandbox database; unset: SQLite file in data_dir"
    )
    live_database_url: str | None = Field(default=None, description="live database")
    data_dir: Path = Field(default_factory=_default_data_dir, description="embedded state")
    visibility_timeout: int = Field(
        default=3600, ge=1, le=30 * 86400, description="seconds, Redis broker"
    )
    consumer_timeout: int = Field(
        default=1800,
        ge=1,
        le=30 * 86400,
        description="seconds, RabbitMQ broker: its server's consumer_timeout",
    )
    heartbeat_interval: float = Field(
        default=10.0, ge=0.1, le=86400, allow_inf_nan=False, description="seconds between ticks"
    )
    heartbeat_grace_seconds: float | None = Field(
        default=None,
        ge=0,
        le=86400,
        allow_inf_nan=False,
        description="seconds a starting worker waits before it may alert heartbeat_stale; "
        "unset: 2 x heartbeat_interval",
    )
    shutdown_timeout: float = Field(
        default=90.0,
        gt=0,
        le=86400,
        allow_inf_nan=False,
        description="seconds a warm shutdown of a threads worker waits for running jobs "
        "before it hands them back (keep it below Kubernetes' grace period)",
    )
    log_format: Literal["json", "console"] = Field(default="json")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(default="INFO")
    log_task_events: bool = Field(
        default=False, description="log Celery's per-task received/succeeded lines"
    )
    otel: bool = Field(
        default=False,
        description="OpenTelemetry traces of enqueue and task runs (needs the otel extra)",
    )
    payload_limit_bytes: int = Field(default=256 * 1024, gt=0, description="max args size")
    key_prefix: str = Field(default="sp", min_length=1, description="prefix of Redis keys")
    alert_webhook_url: str | None = Field(default=None, description="POST alerts here")
    alert_webhook_slack: bool = Field(default=False, description="Slack-compatible payload")
    alert_min_severity: Literal["info", "warning", "error", "critical"] = Field(
        default="warning", description="lowest severity sent to the webhook"
    )
    alert_throttle_seconds: float = Field(
        default=60.0, gt=0, le=7 * 86400, allow_inf_nan=False, description="throttle window"
    )
    governor_wait_alert_seconds: float = Field(
        default=60.0,
        gt=0,
        le=30 * 86400,  # (the bounds refuse inf and nan)
        description="seconds a job may wait on the governor before a warning alert",
    )
    readiness_timeout: float = Field(
        default=5.0, ge=0.1, le=600, allow_inf_nan=False, description="seconds per check"
    )
    poison_max_deliveries: int = Field(default=3, ge=1, description="kills before quarantine")
    retention_days: int = Field(default=30, ge=1, description="days records are kept")
    dead_letter_retention_days: int = Field(
        default=90, ge=1, description="days a dead letter keeps its arguments (for replay)"
    )
    skip_readiness: bool = Field(
        default=False, description="live workers start even on a NO-GO readiness report"
    )
    dashboard_user: str | None = Field(default=None, description="dashboard basic-auth user")
    dashboard_password: str | None = Field(default=None, description="dashboard password")
    dashboard_token: str | None = Field(
        default=None, description="dashboard bearer token (alternative to user/password)"
    )
    flower_basic_auth: str | None = Field(
        default=None, description="Flower's user:password (comma-separated pairs)"
    )
    egress_mode: Literal["block", "record", "off"] = Field(
        default="block", description="sandbox egress guard: block, record (allow) or off"
    )
    egress_allow: str | None = Field(
        default=None, description="host:port patterns task code may reach in sandbox mode"
    )
    secret_keys: str | None = Field(
        default=None,
        description="keys that seal secret task arguments: <id>:<base64 key>, comma-separated; "
        "the first seals, all open (sandbox-platform secrets new-key)",
    )
    secret_fingerprint_key: str | None = Field(
        default=None,
        description="HMAC key of secret arguments' idempotency fingerprints (never rotated)",
    )
    queue_backlog_threshold: int = Field(
        default=1000, gt=0, description="jobs waiting in a queue before a backlog alert"
    )
    queue_max_age: float = Field(
        default=300.0,
        gt=0,
        allow_inf_nan=False,
        description="seconds the oldest waiting job may wait before an alert",
    )

    @field_validator("secret_keys")
    @classmethod
    def _check_secret_keys(cls, value: str | None) -> str | None:
        return None if value is None else check_key_ring(value)

    @field_validator("secret_fingerprint_key")
    @classmethod
    def _check_fingerprint_key(cls, value: str | None) -> str | None:
        return None if value is None else check_fingerprint_key(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("app", mode="before")
    @classmethod
    def _check_app(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            problem = app_name_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("egress_mode", mode="before")
    @classmethod
    def _lower_egress(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("mode", mode="before")
    @classmethod
    def _lower_mode(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if is_cluster_url(value):
            return check_cluster_url(value)
        scheme, sep, rest = value.partition("://")
        if not sep or scheme not in REDIS_SCHEMES or not rest:
            schemes = "/".join(REDIS_SCHEMES + CLUSTER_SCHEMES)
            raise ValueError(f"malformed Redis URL (expected {schemes}://...)")
        return check_redis_url(value)

    @field_validator("broker_url")
    @classmethod
    def _check_broker_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if is_cluster_url(value):
            raise ValueError(
                "the broker cannot be a Redis Cluster (Celery's Redis transport does not "
                "support one); a cluster is for SANDBOX_PLATFORM_REDIS_URL only"
            )
        return check_broker_url(value)

    @field_validator("alert_webhook_url")
    @classmethod
    def _check_webhook(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("malformed webhook URL (expected http:// or https://)")
        return value

    @field_validator("result_backend")
    @classmethod
    def _check_backend(cls, value: str | None) -> str | None:
        if value is None or value == "redis":
            return value
        if "://" not in value:
            raise ValueError("malformed result backend URL (or 'redis' for the Redis URL)")
        return value

    @field_validator("database_url", "live_database_url")
    @classmethod
    def _check_db_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError("malformed database URL") from None
        backend = url.get_backend_name()
        if backend not in ("postgresql", "sqlite"):
            raise ValueError(f"unsupported database {backend!r} (postgresql or sqlite)")
        if backend == "postgresql" and not url.database:
            raise ValueError("database URL names no database")
        return value

    @model_validator(mode="after")
    def _check_cluster(self) -> Settings:
        if self.redis_url is None or not is_cluster_url(self.redis_url):
            return self
        if self.broker_url is None:
            raise SettingsError(
                f"{ENV_PREFIX}BROKER_URL",
                "the coordination Redis is a cluster (redis+cluster://), which Celery cannot "
                "use as its broker: set a broker URL (a single-node Redis)",
            )
        if self.result_backend == "redis":
            raise SettingsError(
                f"{ENV_PREFIX}RESULT_BACKEND",
                "'redis' means the coordination Redis, a cluster here, which Celery cannot use "
                "as its result backend: give a URL",
            )
        return self

    @model_validator(mode="after")
    def _check_isolation(self) -> Settings:
        live, db_url = self.mode is Mode.LIVE, self.live_database_url
        check_live_settings(live=live, live_database_url=db_url, redis_url=self.redis_url)
        if not self.isolated and _ENFORCE_ISOLATION.get():
            raise IsolationError(
                f"{ENV_PREFIX}LIVE_DATABASE_URL",
                "sandbox and live database URLs point at the same database; refusing to start",
            )
        return self

    # -- derived values -------------------------------------------------------------------

    @property
    def isolated(self) -> bool:
        """False when the sandbox and live URLs name the same database."""
        if not self.live_database_url:
            return True
        return database_identity(self.sandbox_database_url) != database_identity(
            self.live_database_url
        )

    @property
    def sandbox_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'sandbox.sqlite3'}"

    @property
    def active_database_url(self) -> str:
        """The database of this process's mode: sandbox data never reaches live."""
        if self.mode is Mode.LIVE:
            assert self.live_database_url is not None  # enforced by the validator
            return self.live_database_url
        return self.sandbox_database_url

    @property
    def heartbeat_grace(self) -> float:
        """Seconds a starting worker's watchdog stays quiet (default 2 x the interval)."""
        if self.heartbeat_grace_seconds is not None:
            return self.heartbeat_grace_seconds
        return 2 * self.heartbeat_interval

    @property
    def broker_kind(self) -> BrokerKind:
        """RabbitMQ for an ``amqp://`` broker URL; Redis otherwise (the default)."""
        return broker_kind(self.broker_url) if self.broker_url else BrokerKind.REDIS

    @property
    def redelivery_timeout(self) -> int:
        """Seconds a delivery may stay unacknowledged before the broker hands it out again:
        Redis's visibility timeout, or RabbitMQ's consumer timeout (past which RabbitMQ closes
        the channel and requeues what it held). Countdowns and delays stay below it."""
        if self.broker_kind is BrokerKind.RABBITMQ:
            return self.consumer_timeout
        return self.visibility_timeout

    @property
    def redelivery_timeout_name(self) -> str:
        """What :attr:`redelivery_timeout` is called on this broker (for messages)."""
        if self.broker_kind is BrokerKind.RABBITMQ:
            return "RabbitMQ consumer timeout"
        return "visibility timeout"

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None

    def public_dict(self) -> dict[str, Any]:
        """The settings with credentials masked, fit for logs and status pages."""
        return {k: _shown(k, str(v)) if v is not None else None for k, v in self}

    def typed_public_dict(self) -> dict[str, Any]:
        """Like :meth:`public_dict`, but numbers and booleans stay numbers and booleans."""
        out: dict[str, Any] = {}
        for key, value in self:
            if value is None or isinstance(value, bool | int | float):
                out[key] = value
            else:
                out[key] = _shown(key, str(value))
        return out

    @property
    def dashboard_auth_configured(self) -> bool:
        return bool(self.dashboard_token or (self.dashboard_user and self.dashboard_password))


#: settings whose whole value is a secret (masked wherever settings are shown)
SECRET_SETTINGS = frozenset(
    {
        "dashboard_password",
        "dashboard_token",
        "flower_basic_auth",
        "secret_keys",
        "secret_fingerprint_key",
    }
)


_APP_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*)?")


def app_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name an app module (``pkg.module`` or ``pkg.module:attr``), or None."""
    if _APP_NAME.fullmatch(name):
        return None
    return f"not a module name: {name!r} (expected pkg.module or pkg.module:attr)"


def _shown(key: str, text: str) -> str:
    if key in SECRET_SETTINGS:
        return MASK
    if key == "alert_webhook_url":  # the path of a Slack-style webhook URL is its secret
        parts = urlsplit(text)
        return f"{parts.scheme}://{parts.hostname}{'/' + MASK if parts.path.strip('/') else ''}"
    return redact_value(text)


def _env_name(loc: tuple[int | str, ...]) -> str:
    field = str(loc[0]) if loc else ""
    return f"{ENV_PREFIX}{field.upper()}" if field else f"{ENV_PREFIX}*"


def load_settings(*, enforce_isolation: bool = True, **overrides: Any) -> Settings:
    """Read and validate the settings once; raise a one-line :class:`SettingsError`.

    ``enforce_isolation=False`` is for the readiness report only: it loads settings whose
    sandbox and live databases coincide so the report can say NO-GO with a reason code.
    """
    token = _ENFORCE_ISOLATION.set(enforce_isolation)
    try:
        return Settings(**overrides)
    except SettingsError:
        raise
    except ValidationError as exc:
        first = exc.errors()[0]
        ctx_error = (first.get("ctx") or {}).get("error")
        if isinstance(ctx_error, SettingsError):
            raise ctx_error from None
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "enum":
            message = f"unknown value {first.get('input')!r} ({message})"
        raise SettingsError(_env_name(first["loc"]), message) from None
    finally:
        _ENFORCE_ISOLATION.reset(token)
