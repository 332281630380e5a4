"""Readiness without services: the report's shape, error handling and the offline checks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from sandbox_platform.app.factory import create_app
from sandbox_platform.core.secret_keys import new_key
from sandbox_platform.core.settings import Mode, Settings, load_settings
from sandbox_platform.guards.dry_run import DryRunLock
from sandbox_platform.guards.retry import RetryPolicy
from sandbox_platform.ops.readiness import (
    CHECK_NAMES,
    CONFIG_COUNTDOWN_EXCEEDS_VISIBILITY,
    CONFIG_LATE_ACKS_OFF,
    DRY_RUN_DISARMED,
    GOVERNOR_LIMIT_MISSING,
    NO_WORKER,
    OK,
    REASON_CODES,
    SANDBOX_NOT_ISOLATED,
    SECRET_KEYS_MISSING,
    CheckResult,
    ReadinessChecker,
    Report,
)
from sandbox_platform.ops.readiness_checks import CheckContext
from sandbox_platform.tasks import guarded_task

NOW = datetime(2026, 1, 1, tzinfo=UTC)
# Nothing listens on port 1: a check that tried to connect would fail, not hang.
DEAD_REDIS = "redis://127.0.0.1:1/0"


def only(*names: str) -> list[str]:
    """The skip list that runs only ``names``."""
    return [name for name in CHECK_NAMES if name not in names]


def result(name: str, code: str = OK) -> CheckResult:
    return CheckResult(name, code == OK, code, f"{name} says {code}", 1.5, NOW)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(redis_url=DEAD_REDIS, data_dir=tmp_path)


@pytest.fixture
def app(settings: Settings) -> Iterator[Celery]:
    app = create_app(settings)
    yield app
    app.close()


# -- the report --------------------------------------------------------------------------------


def test_report_reasons_verdict_and_dicts() -> None:
    checks = (
        result("database"),
        result("worker", NO_WORKER),
        result("beat", "BEAT_STALE"),
        result("governor", NO_WORKER),
    )
    report = Report(go=False, checks=checks, checked_at=NOW)
    assert report.reasons == [NO_WORKER, "BEAT_STALE"]  # check order, each code once
    assert report.verdict == "NO-GO"
    assert report.get("worker") is checks[1]
    assert report.get("nope") is None

    data = json.loads(json.dumps(report.to_dict()))
    assert data["go"] is False and data["verdict"] == "NO-GO"
    assert data["checked_at"] == NOW.isoformat()
    assert data["checks"][0] == {
        "name": "database",
        "ok": True,
        "code": OK,
        "message": "database says OK",
        "duration_ms": 1.5,
        "checked_at": NOW.isoformat(),
    }

    status = json.loads(json.dumps(report.to_status()))
    assert status["ready"] is False
    assert status["checks"] == {"database": True, "worker": False, "beat": False, "governor": False}
    assert status["details"]["worker"]["code"] == NO_WORKER
    assert set(status["details"]["worker"]) == {
        "ok",
        "code",
        "message",
        "duration_ms",
        "checked_at",
    }
    assert status["reasons"] == report.reasons


def test_go_report() -> None:
    report = Report(go=True, checks=(result("database"),), checked_at=NOW)
    assert report.verdict == "GO"
    assert report.reasons == []


def test_reason_codes_are_stable_strings() -> None:
    assert len(set(REASON_CODES)) == 15
    assert all(code == code.upper() and code != OK for code in REASON_CODES)
    assert CHECK_NAMES == (
        "extras",
        "database",
        "migrations",
        "redis",
        "broker",
        "worker",
        "beat",
        "config",
        "isolation",
        "dry_run",
        "governor",
        "secret_keys",
    )


# -- the runner --------------------------------------------------------------------------------


def test_unknown_skip_and_bad_timeout_are_refused(settings: Settings) -> None:
    with pytest.raises(ValueError, match="unknown readiness check"):
        ReadinessChecker(settings, skip=["nope"])
    with pytest.raises(ValueError, match="timeout"):
        ReadinessChecker(settings, timeout=0)
    assert ReadinessChecker(settings).timeout == settings.readiness_timeout


def test_an_unexpected_exception_fails_only_its_check_redacted(settings: Settings) -> None:
    def boom(_ctx: CheckContext) -> str:
        raise RuntimeError("cannot reach postgresql://admin:hunter2@db/x\n  second line")

    class Checker(ReadinessChecker):
        checks = {
            "config": (CONFIG_LATE_ACKS_OFF, boom),
            "isolation": (SANDBOX_NOT_ISOLATED, lambda _ctx: "fine"),
        }

    report = Checker(settings).run()
    config, isolation = report.checks
    assert not report.go
    assert (config.ok, config.code) == (False, CONFIG_LATE_ACKS_OFF)
    assert "RuntimeError" in config.message and "second line" in config.message
    assert "hunter2" not in config.message
    assert "\n" not in config.message
    assert "Traceback" not in config.message
    assert (isolation.ok, isolation.code, isolation.message) == (True, OK, "fine")
    assert config.duration_ms >= 0 and config.checked_at.tzinfo is not None


def test_on_no_go_called_on_no_go_only_and_its_errors_do_not_escape(settings: Settings) -> None:
    seen: list[Report] = []

    class Failing(ReadinessChecker):
        checks = {"isolation": (SANDBOX_NOT_ISOLATED, lambda _ctx: str(1 / 0))}

    class Passing(ReadinessChecker):
        checks = {"isolation": (SANDBOX_NOT_ISOLATED, lambda _ctx: "fine")}

    report = Failing(settings, on_no_go=seen.append).run()
    assert seen == [report]
    Passing(settings, on_no_go=seen.append).run()
    assert len(seen) == 1

    def broken(_report: Report) -> None:
        raise RuntimeError("alerting is down")

    assert Failing(settings, on_no_go=broken).run().reasons == [SANDBOX_NOT_ISOLATED]
    assert Failing(settings).is_ready() is False
    assert Passing(settings).get_status()["ready"] is True


def test_the_app_is_built_only_when_a_check_needs_it(settings: Settings) -> None:
    checker = ReadinessChecker(settings, skip=only("isolation"))
    assert checker.run().go
    assert checker.app is None
    checker = ReadinessChecker(settings, skip=only("config"))
    assert checker.run().go
    assert isinstance(checker.app, Celery)
    checker.app.close()


# -- offline checks ----------------------------------------------------------------------------


def test_config_late_acks_off(app: Celery, settings: Settings) -> None:
    app.conf.task_reject_on_worker_lost = False
    report = ReadinessChecker(settings, app, skip=only("config")).run()
    config = report.get("config")
    assert config is not None and config.code == CONFIG_LATE_ACKS_OFF
    assert "task_reject_on_worker_lost" in config.message


def test_config_retry_countdown_beyond_visibility(tmp_path: Path) -> None:
    settings = load_settings(redis_url=DEAD_REDIS, data_dir=tmp_path, visibility_timeout=30)
    app = create_app(settings)
    try:

        @guarded_task(app, name="unit.slow_retry", retry=RetryPolicy(max_retries=2, cap=45.0))
        def slow_retry() -> None: ...

        @guarded_task(app, name="unit.fast_retry", retry=RetryPolicy(max_retries=2, cap=5.0))
        def fast_retry() -> None: ...

        report = ReadinessChecker(settings, app, skip=only("config")).run()
    finally:
        app.close()
    config = report.get("config")
    assert config is not None and config.code == CONFIG_COUNTDOWN_EXCEEDS_VISIBILITY
    assert "unit.slow_retry" in config.message
    assert "unit.fast_retry" not in config.message


def test_isolation(tmp_path: Path) -> None:
    same = f"sqlite:///{tmp_path / 'one.db'}"
    shared = load_settings(
        enforce_isolation=False, redis_url=DEAD_REDIS, database_url=same, live_database_url=same
    )
    report = ReadinessChecker(shared, skip=only("isolation")).run()
    assert report.reasons == [SANDBOX_NOT_ISOLATED]

    apart = load_settings(
        redis_url=DEAD_REDIS,
        database_url=same,
        live_database_url=f"sqlite:///{tmp_path / 'two.db'}",
    )
    assert ReadinessChecker(apart, skip=only("isolation")).run().go


def test_dry_run_live_mode_passes_through(tmp_path: Path) -> None:
    live = load_settings(
        redis_url=DEAD_REDIS,
        mode="live",
        database_url=f"sqlite:///{tmp_path / 'sandbox.db'}",
        live_database_url=f"sqlite:///{tmp_path / 'live.db'}",
    )
    report = ReadinessChecker(live, skip=only("dry_run")).run()
    dry_run = report.get("dry_run")
    assert dry_run is not None and dry_run.ok
    assert dry_run.message == "live mode: pass-through"


@pytest.mark.parametrize(("lock_mode", "code"), [(Mode.SANDBOX, OK), (Mode.LIVE, DRY_RUN_DISARMED)])
def test_dry_run_sandbox_needs_an_armed_lock(
    settings: Settings, lock_mode: Mode, code: str
) -> None:
    lock = DryRunLock(lock_mode)
    report = ReadinessChecker(settings, skip=only("dry_run"), dry_run_lock=lock).run()
    dry_run = report.get("dry_run")
    assert dry_run is not None and dry_run.code == code


def test_governor_templated_resources_are_listed_not_checked(
    app: Celery, settings: Settings
) -> None:
    @guarded_task(app, name="unit.per_user", governor=["api:{user}"])
    def per_user(user: str) -> None: ...

    report = ReadinessChecker(settings, app, skip=only("governor")).run()
    governor = report.get("governor")
    assert governor is not None and governor.ok  # no fixed resource: Redis is not consulted
    assert "api:{user}" in governor.message
    assert "not checkable" in governor.message


def test_governor_with_redis_down_says_redis(app: Celery, settings: Settings) -> None:
    @guarded_task(app, name="unit.fixed", governor=["fixed-bucket"])
    def fixed() -> None: ...

    report = ReadinessChecker(settings, app, timeout=1, skip=only("governor")).run()
    governor = report.get("governor")
    assert governor is not None and not governor.ok
    assert governor.code == "REDIS_UNREACHABLE"
    assert governor.code != GOVERNOR_LIMIT_MISSING


@pytest.mark.parametrize(
    ("keys", "missing"),
    [
        ({}, "SANDBOX_PLATFORM_SECRET_KEYS"),
        ({"secret_keys": new_key("k1")}, "SANDBOX_PLATFORM_SECRET_FINGERPRINT_KEY"),
    ],
)
def test_secret_keys_live_app_with_secrets_needs_its_keys(
    tmp_path: Path, keys: dict[str, Any], missing: str
) -> None:
    """Found before any service is asked (Redis is dead here); the key is never shown."""
    live = load_settings(
        redis_url=DEAD_REDIS,
        mode="live",
        database_url=f"sqlite:///{tmp_path / 'sandbox.db'}",
        live_database_url=f"sqlite:///{tmp_path / 'live.db'}",
        **keys,
    )
    app = create_app(live)
    try:

        @guarded_task(app, name="unit.pay", secret=["card"])
        def pay(card: str) -> None: ...

        report = ReadinessChecker(live, app, timeout=1, skip=only("secret_keys")).run()
    finally:
        app.close()
    check = report.get("secret_keys")
    assert check is not None and check.code == SECRET_KEYS_MISSING
    assert f"{missing} is not set" in check.message and "unit.pay" in check.message
    assert "***" not in check.message  # readable after the report's redaction
    assert all(key.split(":", 1)[1] not in check.message for key in keys.values())
