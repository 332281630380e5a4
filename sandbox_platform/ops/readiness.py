"""GO/NO-GO readiness: every check's verdict with a stable reason code.

::

    from sandbox_platform.ops.readiness import ReadinessChecker

    report = ReadinessChecker(settings, app).run()
    if not report.go:
        print(report.reasons)        # e.g. ['REDIS_UNREACHABLE', 'NO_WORKER']

The checks (:mod:`sandbox_platform.ops.readiness_checks`), in order: ``extras`` (what the
settings turn on has its extra installed), ``database``,
``migrations``, ``redis``, ``broker``, ``worker``, ``beat``, ``config``, ``isolation``,
``dry_run``, ``governor``, ``secret_keys``. Each runs on its own: an unexpected exception
fails that check with its code and the (redacted) exception text, never a traceback, and the
others still run.
Network checks are bounded by ``timeout`` (default ``settings.readiness_timeout``).

:meth:`ReadinessChecker.get_status` and :meth:`ReadinessChecker.is_ready` are the seed's API.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import structlog
from celery import Celery

from sandbox_platform.broker.celery_config import bare_app
from sandbox_platform.core.errors import ExtraMissing
from sandbox_platform.core.redaction import redact_value
from sandbox_platform.core.settings import Settings
from sandbox_platform.guards.dry_run import DryRunLock
from sandbox_platform.ops.readiness_checks import (
    BEAT_STALE,
    BROKER_UNREACHABLE,
    CANARY_TIMEOUT,
    CHECK_NAMES,
    CHECKS,
    CONFIG_COUNTDOWN_EXCEEDS_VISIBILITY,
    CONFIG_LATE_ACKS_OFF,
    DATABASE_UNREACHABLE,
    DRY_RUN_DISARMED,
    EXTRA_MISSING,
    GOVERNOR_LIMIT_MISSING,
    MIGRATIONS_BEHIND,
    NO_WORKER,
    OK,
    REASON_CODES,
    REDIS_UNREACHABLE,
    SANDBOX_NOT_ISOLATED,
    SECRET_KEY_MISSING,
    SECRET_KEYS_MISSING,
    CheckContext,
    CheckFailed,
    CheckFunction,
)

__all__ = [
    "BEAT_STALE",
    "BROKER_UNREACHABLE",
    "CANARY_TIMEOUT",
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
    "CheckFailed",
    "CheckResult",
    "ReadinessChecker",
    "Report",
]

log = structlog.get_logger(__name__)

_MAX_MESSAGE = 500


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome. ``code`` is ``"OK"`` when ``ok``, else a stable reason code."""

    name: str
    ok: bool
    code: str
    message: str
    duration_ms: float
    checked_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "code": self.code,
            "message": self.message,
            "duration_ms": round(self.duration_ms, 3),
            "checked_at": self.checked_at.isoformat(),
        }


@dataclass(frozen=True)
class Report:
    """Every check's result; ``go`` only when all passed."""

    go: bool
    checks: tuple[CheckResult, ...]
    checked_at: datetime

    @property
    def reasons(self) -> list[str]:
        """The codes of the failing checks, in check order, each once."""
        return list(dict.fromkeys(c.code for c in self.checks if not c.ok))

    @property
    def verdict(self) -> Literal["GO", "NO-GO"]:
        return "GO" if self.go else "NO-GO"

    def get(self, name: str) -> CheckResult | None:
        """The result of check ``name`` (None if it was skipped)."""
        return next((c for c in self.checks if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: ``go``, ``verdict``, ``checked_at``, ``reasons``, ``checks`` (list)."""
        return {
            "go": self.go,
            "verdict": self.verdict,
            "checked_at": self.checked_at.isoformat(),
            "reasons": self.reasons,
            "checks": [c.to_dict() for c in self.checks],
        }

    def to_status(self) -> dict[str, Any]:
        """The seed's ``get_status()`` shape (``checks`` maps name -> passed)."""
        return {
            "ready": self.go,
            "verdict": self.verdict,
            "checks": {c.name: c.ok for c in self.checks},
            "details": {
                c.name: {k: v for k, v in c.to_dict().items() if k != "name"} for c in self.checks
            },
            "reasons": self.reasons,
        }


def _clean(text: str) -> str:
    return redact_value(" ".join(text.split()))[:_MAX_MESSAGE]


def _call(callback: Callable[[Report], None], report: Report, name: str) -> None:
    """A report callback's error is logged, never raised."""
    try:
        callback(report)
    except Exception:
        log.exception(f"readiness {name} callback failed")


class ReadinessChecker:
    """Runs the readiness checks against ``settings`` (and ``app``'s broker and tasks).

    ``app`` None: a bare app with the platform's Celery configuration
    (:func:`~sandbox_platform.broker.celery_config.bare_app`, no tasks) is built only when a
    check needs one (broker, worker, config, governor); pass the application's app to check
    its tasks. ``skip`` names checks not to run (they are left out of the report).
    ``on_no_go`` is called with every NO-GO report, ``on_report`` with every report (GO
    too: :class:`~sandbox_platform.ops.readiness_alerts.VerdictAlerts` alerts on changes); an
    error inside either is logged, never raised. ``dry_run_lock`` is the lock the dry-run
    check inspects (default: the process's).
    """

    #: name -> (failure code, function); a subclass may replace entries.
    checks: ClassVar[Mapping[str, tuple[str, CheckFunction]]] = CHECKS

    def __init__(
        self,
        settings: Settings,
        app: Celery | None = None,
        *,
        timeout: float | None = None,
        skip: Collection[str] = (),
        on_no_go: Callable[[Report], None] | None = None,
        dry_run_lock: DryRunLock | None = None,
        on_report: Callable[[Report], None] | None = None,
    ) -> None:
        unknown = sorted(set(skip) - set(self.checks))
        if unknown:
            known = ", ".join(self.checks)
            raise ValueError(f"unknown readiness check(s): {', '.join(unknown)}; known: {known}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self.settings = settings
        self.app = app
        self.timeout = float(timeout if timeout is not None else settings.readiness_timeout)
        self.skip = frozenset(skip)
        self.on_no_go = on_no_go
        self.on_report = on_report
        self.dry_run_lock = dry_run_lock

    def _build_app(self) -> Celery:
        if self.app is None:
            self.app = bare_app(self.settings)
        return self.app

    def run(self) -> Report:
        """Run every check not skipped; call ``on_no_go`` on NO-GO."""
        context = CheckContext(self.settings, self.timeout, self._build_app, self.dry_run_lock)
        try:
            results = tuple(
                self._run_one(name, code, function, context)
                for name, (code, function) in self.checks.items()
                if name not in self.skip
            )
        finally:
            context.close()
        report = Report(go=all(r.ok for r in results), checks=results, checked_at=datetime.now(UTC))
        if not report.go:
            log.warning("readiness NO-GO", reasons=report.reasons)
            if self.on_no_go is not None:
                _call(self.on_no_go, report, "on_no_go")
        if self.on_report is not None:
            _call(self.on_report, report, "on_report")
        return report

    @staticmethod
    def _run_one(
        name: str, code: str, function: CheckFunction, context: CheckContext
    ) -> CheckResult:
        checked_at = datetime.now(UTC)
        started = time.perf_counter()
        try:
            ok, result_code, message = True, OK, function(context)
        except CheckFailed as failed:
            ok, result_code, message = False, failed.code, failed.message
        except ExtraMissing as missing:  # a Redis or database the core install cannot reach
            ok, result_code, message = False, EXTRA_MISSING, str(missing)
        except Exception as exc:
            ok, result_code = False, code
            message = f"check failed: {type(exc).__name__}: {exc}"
        return CheckResult(
            name=name,
            ok=ok,
            code=result_code,
            message=_clean(message),
            duration_ms=(time.perf_counter() - started) * 1000,
            checked_at=checked_at,
        )

    # -- the seed's API ---------------------------------------------------------------------

    def get_status(self) -> dict[str, Any]:
        """Run the checks; the seed's shape (``ready``, ``checks`` name -> passed, ...)."""
        return self.run().to_status()

    def is_ready(self) -> bool:
        return self.run().go
