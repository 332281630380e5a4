"""A live worker checks readiness before it consumes and refuses to start on NO-GO.

The ``worker`` and ``beat`` checks are skipped (this worker is not up yet and beat may start
after it); every other check must pass. ``SANDBOX_PLATFORM_SKIP_READINESS=true`` (or
``sandbox-platform worker --skip-readiness``) is the explicit override; it is logged loudly.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import structlog
from celery import Celery

from sandbox_platform.core.errors import SettingsError
from sandbox_platform.core.exits import settings_error_exit
from sandbox_platform.core.secret_config import secret_keys_for
from sandbox_platform.core.settings import Mode, Settings
from sandbox_platform.ops.alerts import AlertDispatcher, Severity
from sandbox_platform.ops.readiness import CONFIG_COUNTDOWN_EXCEEDS_VISIBILITY, ReadinessChecker
from sandbox_platform.ops.secret_usage import secret_tasks

__all__ = ["EXIT_NO_GO", "GATE_SKIPS", "check_live_worker", "check_secret_keys"]

log = structlog.get_logger(__name__)

GATE_SKIPS = frozenset({"worker", "beat"})
#: findings readiness reports that do not stop a live worker: the platform caps its delays
#: below the visibility timeout, so such a configuration still loses nothing
CAPPED_CODES = frozenset({CONFIG_COUNTDOWN_EXCEEDS_VISIBILITY})
EXIT_NO_GO = 3


def check_live_worker(
    settings: Settings, app: Celery, alerts: Callable[[], AlertDispatcher]
) -> None:
    """Exit the process (code 3) when a live worker's readiness is NO-GO.

    ``alerts`` gives the dispatcher for the critical alert (called only on NO-GO).
    """
    if settings.mode is not Mode.LIVE:
        return
    if settings.skip_readiness:
        log.warning("live worker starting WITHOUT a readiness check (override set)")
        return

    def alert(report: object) -> None:
        alerts().alert(
            Severity.CRITICAL,
            "readiness_no_go",
            "live worker refused to start: readiness NO-GO",
            reasons=getattr(report, "reasons", []),
        )

    report = ReadinessChecker(settings, app, skip=GATE_SKIPS).run()
    blocking = [c for c in report.checks if not c.ok and c.code not in CAPPED_CODES]
    if not blocking:
        if not report.go:
            log.warning(
                "live worker starts: the platform caps what readiness flags", reasons=report.reasons
            )
        else:
            log.info("live worker readiness: GO")
        return
    alert(report)
    reasons = ", ".join(dict.fromkeys(c.code for c in blocking))
    failing = "; ".join(f"{c.name}: {c.code}: {c.message}" for c in blocking)
    log.critical("live worker refused to start: readiness NO-GO", reasons=report.reasons)
    print(
        f"sandbox-platform: live worker refused to start, readiness NO-GO ({reasons}): "
        f"{failing}. Fix these, or set SANDBOX_PLATFORM_SKIP_READINESS=true to override.",
        file=sys.stderr,
    )
    raise SystemExit(EXIT_NO_GO)


def check_secret_keys(settings: Settings, app: Celery) -> None:
    """A worker whose app has tasks with secret arguments starts only with keys to open them:
    live mode without them is a settings error (one line, exit 2); a sandbox generates its
    key now, saying so once."""
    if not secret_tasks(app):
        return
    try:
        secret_keys_for(settings)
    except SettingsError as error:
        settings_error_exit(error)
