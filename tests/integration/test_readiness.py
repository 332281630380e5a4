"""Readiness against real services: one test per fault, and everything healthy -> GO.

The CLI runs as ``python -m sandbox_platform readiness --json --app tests.worker_app`` in a
subprocess with the test's environment; other faults call :class:`ReadinessChecker` directly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from sandbox_platform.app.factory import create_app
from sandbox_platform.app.runtime import reset_runtime
from sandbox_platform.coordination.governor import Governor
from sandbox_platform.core.settings import Settings, load_settings
from sandbox_platform.ops.heartbeat import Heartbeat
from sandbox_platform.ops.readiness import (
    BEAT_STALE,
    BROKER_UNREACHABLE,
    CANARY_TIMEOUT,
    CHECK_NAMES,
    DATABASE_UNREACHABLE,
    GOVERNOR_LIMIT_MISSING,
    MIGRATIONS_BEHIND,
    NO_WORKER,
    OK,
    REDIS_UNREACHABLE,
    SANDBOX_NOT_ISOLATED,
    ReadinessChecker,
    Report,
)
from tests.brokers import ON_BOTH_BROKERS
from tests.helpers import platform_env, wait_until

ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT = 120  # seconds for one CLI run, as a safety net; a run takes a few seconds


def run_cli(settings: dict[str, object], *args: str) -> tuple[int, dict[str, Any], str]:
    """Run the readiness command; return (exit code, the JSON report, stderr)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox_platform",
            "readiness",
            "--json",
            "--app",
            "tests.worker_app",
            *args,
        ],
        env=platform_env(**settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"no JSON on stdout (exit {proc.returncode}): {proc.stdout!r} {proc.stderr}")
    return proc.returncode, report, proc.stderr


def codes(report: dict[str, Any]) -> dict[str, str]:
    return {check["name"]: check["code"] for check in report["checks"]}


@pytest.fixture
def checker_for() -> Iterator[Callable[..., tuple[ReadinessChecker, Settings]]]:
    """Build a checker (and its app) in the test process from settings keyword arguments."""
    apps: list[Celery] = []
    reset_runtime()

    def build(
        settings_kwargs: dict[str, object], **options: Any
    ) -> tuple[ReadinessChecker, Settings]:
        settings = load_settings(**settings_kwargs)  # type: ignore[arg-type]
        app = create_app(settings)
        apps.append(app)
        return ReadinessChecker(settings, app, **options), settings

    yield build
    reset_runtime()
    for app in apps:
        app.close()


def _record_fresh_tick(redis_client: redis.Redis, database_url: str | None = None) -> None:
    heartbeat = Heartbeat(redis_client, interval_seconds=10.0, database_url=database_url)
    assert heartbeat.record_tick(f"readiness-test:{time.time_ns()}", worker="test") is True


# -- all healthy -------------------------------------------------------------------------------


@ON_BOTH_BROKERS
def test_go_when_everything_is_healthy(
    pg_settings_kwargs: dict[str, object],
    redis_client: redis.Redis,
    worker_factory: Any,
    checker_for: Callable[..., tuple[ReadinessChecker, Settings]],
) -> None:
    checker, settings = checker_for(pg_settings_kwargs)
    assert checker.app is not None
    worker_factory(checker.app, "tests.worker_app", **pg_settings_kwargs)
    _record_fresh_tick(redis_client, settings.sandbox_database_url)
    Governor(redis_client, settings.key_prefix).set_limit("test-bucket", 100, 1.0)

    code, report, stderr = run_cli(pg_settings_kwargs)

    assert report["verdict"] == "GO", report
    assert code == 0, stderr
    assert report["go"] is True
    assert report["reasons"] == []
    assert [c["name"] for c in report["checks"]] == list(CHECK_NAMES)
    assert set(codes(report).values()) == {OK}
    assert report["notes"] == []
    by_name = {c["name"]: c for c in report["checks"]}
    assert "canary back" in by_name["worker"]["message"]
    assert "test-bucket" in by_name["governor"]["message"]

    # the same verdict in process, through the seed's API
    status = checker.get_status()
    assert status["ready"] is True
    assert status["verdict"] == "GO"
    assert all(passed for _check, passed in status["checks"].items())
    assert set(status["checks"]) == set(CHECK_NAMES)
    assert checker.is_ready() is True


# -- one fault each ----------------------------------------------------------------------------


def test_redis_down_is_no_go(
    platform_settings_kwargs: dict[str, object],
    private_redis: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, url = private_redis
    settings = {**platform_settings_kwargs, "redis_url": url}
    proc.terminate()
    proc.wait(10)

    started = time.monotonic()
    code, report, stderr = run_cli(settings, "--timeout", "2")

    assert code == 1, stderr
    assert report["verdict"] == "NO-GO"
    assert REDIS_UNREACHABLE in report["reasons"]
    by_code = codes(report)
    assert by_code["redis"] == REDIS_UNREACHABLE
    assert by_code["broker"] == BROKER_UNREACHABLE  # the broker is the same Redis
    assert by_code["beat"] == REDIS_UNREACHABLE
    assert time.monotonic() - started < 60  # fails fast, no endless reconnects
    assert "Traceback" not in stderr


def test_rabbitmq_down_is_broker_unreachable_and_coordination_still_checked(
    redis_url: str,
    sqlite_url: str,
    tmp_path: Path,
    checker_for: Callable[..., tuple[ReadinessChecker, Settings]],
) -> None:
    from sandbox_platform.db import migrate

    migrate.upgrade(sqlite_url)
    kwargs: dict[str, object] = {
        "redis_url": redis_url,
        "broker_url": "amqp://guest:s3cret-pw@127.0.0.1:7369//",  # nothing listens there
        "database_url": sqlite_url,
        "data_dir": tmp_path / "data",
    }
    started = time.monotonic()
    code, report, stderr = run_cli(kwargs, "--skip", "beat")

    assert code == 1 and report["verdict"] == "NO-GO", report
    by_code = codes(report)
    assert by_code["broker"] == BROKER_UNREACHABLE and by_code["worker"] == BROKER_UNREACHABLE
    assert by_code["redis"] == OK  # the coordination Redis is checked on its own
    assert time.monotonic() - started < 60  # fails fast, no endless reconnects
    assert "Traceback" not in stderr and "s3cret-pw" not in json.dumps(report) + stderr


def test_database_unreachable_is_no_go(
    redis_url: str,
    tmp_path: Path,
    checker_for: Callable[..., tuple[ReadinessChecker, Settings]],
) -> None:
    kwargs: dict[str, object] = {
        "redis_url": redis_url,
        "database_url": "postgresql://postgres:s3cret-pw@127.0.0.1:1/x",
        "data_dir": tmp_path / "data",
    }
    checker, _ = checker_for(kwargs, timeout=2, skip=["worker"])
    report = checker.run()

    assert not report.go
    assert DATABASE_UNREACHABLE in report.reasons
    database = report.get("database")
    assert database is not None and database.code == DATABASE_UNREACHABLE
    assert "s3cret-pw" not in json.dumps(report.to_dict())

    code, cli_report, _stderr = run_cli(kwargs, "--timeout", "2", "--skip", "worker")
    assert code == 1
    assert DATABASE_UNREACHABLE in cli_report["reasons"]


def test_migrations_behind_is_no_go(
    redis_url: str,
    pg_url: str,
    tmp_path: Path,
    checker_for: Callable[..., tuple[ReadinessChecker, Settings]],
) -> None:
    from sandbox_platform.db.migrate import head_revision

    kwargs = {"redis_url": redis_url, "database_url": pg_url, "data_dir": tmp_path / "data"}
    checker, _ = checker_for(kwargs, timeout=2, skip=["worker"])
    report = checker.run()

    assert MIGRATIONS_BEHIND in report.reasons
    database, migrations = report.get("database"), report.get("migrations")
    assert database is not None and database.ok
    assert migrations is not None and migrations.code == MIGRATIONS_BEHIND
    assert str(head_revision(pg_url)) in migrations.message
    assert "none" in migrations.message


def test_no_worker_is_no_go(
    platform_settings_kwargs: dict[str, object],
    checker_for: Callable[..., tuple[ReadinessChecker, Settings]],
) -> None:
    checker, _ = checker_for(platform_settings_kwargs, timeout=1)
    report = checker.run()

    assert not report.go
    assert NO_WORKER in report.reasons
    worker = report.get("worker")
    assert worker is not None and worker.code == NO_WORKER


def test_worker_without_canary_round_trip_is_canary_timeout(
    platform_settings_kwargs: dict[str, object],
    worker_factory: Any,
    checker_for: Callable[..., tuple[ReadinessChecker, Settings]],
) -> None:
    # The worker answers ping but writes its canary under another key prefix, as a worker
    # wired to another coordination Redis would: the round trip never comes back.
    checker, _ = checker_for(platform_settings_kwargs, timeout=2)
    assert checker.app is not None
    worker_factory(checker.app, "tests.worker_app", key_prefix="elsewhere")
    report = checker.run()

    worker = report.get("worker")
    assert worker is not None and worker.code == CANARY_TIMEOUT, worker
    assert CANARY_TIMEOUT in report.reasons


@pytest.mark.parametrize("tick", ["none", "old"])
def test_stale_beat_is_no_go(
    tick: str,
    platform_settings_kwargs: dict[str, object],
    redis_client: redis.Redis,
    checker_for: Callable[..., tuple[ReadinessChecker, Settings]],
) -> None:
    kwargs = {**platform_settings_kwargs, "heartbeat_interval": 0.5}
    checker, settings = checker_for(kwargs, timeout=1, skip=["worker"])
    if tick == "old":
        heartbeat = Heartbeat(redis_client, interval_seconds=0.5, prefix=settings.key_prefix)
        heartbeat.record_tick("readiness-old-tick")
        wait_until(
            lambda: (heartbeat.last_tick_age() or 0) > 1.1, timeout=10, message="tick not old"
        )

    report = checker.run()

    assert BEAT_STALE in report.reasons
    beat = report.get("beat")
    assert beat is not None and beat.code == BEAT_STALE
    if tick == "old":
        assert "ago" in beat.message
    else:
        assert "no heartbeat tick" in beat.message


def test_fresh_beat_passes(
    platform_settings_kwargs: dict[str, object],
    redis_client: redis.Redis,
    checker_for: Callable[..., tuple[ReadinessChecker, Settings]],
) -> None:
    only_beat = [name for name in CHECK_NAMES if name != "beat"]
    checker, _ = checker_for(platform_settings_kwargs, timeout=1, skip=only_beat)
    _record_fresh_tick(redis_client)
    report = checker.run()
    assert report.go, report
    assert [c.name for c in report.checks] == ["beat"]


def test_sandbox_equal_to_live_is_no_go_exit_1(platform_settings_kwargs: dict[str, object]) -> None:
    settings = {
        **platform_settings_kwargs,
        "live_database_url": platform_settings_kwargs["database_url"],
    }
    code, report, stderr = run_cli(settings, "--timeout", "1", "--skip", "worker")

    assert code == 1, stderr  # NO-GO, not the settings error's 2
    assert report["verdict"] == "NO-GO"
    assert SANDBOX_NOT_ISOLATED in report["reasons"]
    assert codes(report)["isolation"] == SANDBOX_NOT_ISOLATED
    # the app module refuses these settings, so the command says it used its own app
    assert any("tests.worker_app" in note for note in report["notes"])


def test_governor_limit_missing_then_set(
    platform_settings_kwargs: dict[str, object],
    redis_client: redis.Redis,
    checker_for: Callable[..., tuple[ReadinessChecker, Settings]],
) -> None:
    from tests.task_defs import register

    only_governor = [name for name in CHECK_NAMES if name != "governor"]
    checker, settings = checker_for(platform_settings_kwargs, skip=only_governor)
    assert checker.app is not None
    register(checker.app)

    missing = checker.run()
    result = missing.get("governor")
    assert result is not None and result.code == GOVERNOR_LIMIT_MISSING
    assert "test-bucket" in result.message

    Governor(redis_client, settings.key_prefix).set_limit("test-bucket", 5, 1.0)
    assert checker.run().go


def test_on_no_go_receives_the_report(
    platform_settings_kwargs: dict[str, object],
    checker_for: Callable[..., tuple[ReadinessChecker, Settings]],
) -> None:
    seen: list[Report] = []
    checker, _ = checker_for(
        platform_settings_kwargs,
        timeout=1,
        skip=[name for name in CHECK_NAMES if name != "beat"],
        on_no_go=seen.append,
    )
    report = checker.run()
    assert seen == [report]
    assert seen[0].reasons == [BEAT_STALE]


@pytest.mark.parametrize("fault", ["migrations_behind", "no_worker", "stale_beat"])
def test_cli_exits_1_with_the_reason_code(
    fault: str, platform_settings_kwargs: dict[str, object], pg_url: str
) -> None:
    """The faults checked in-process above, once more through the CLI: NO-GO, exit 1."""
    settings = dict(platform_settings_kwargs)
    expected = {
        "migrations_behind": MIGRATIONS_BEHIND,
        "no_worker": NO_WORKER,
        "stale_beat": BEAT_STALE,
    }[fault]
    if fault == "migrations_behind":
        settings["database_url"] = pg_url  # an empty database: no migration applied
    code, report, stderr = run_cli(settings, "--timeout", "1")
    assert code == 1, stderr
    assert report["verdict"] == "NO-GO"
    assert expected in report["reasons"]
    assert "Traceback" not in stderr


def test_before_migrations_the_report_says_so_without_alert_sink_dumps(
    platform_settings_kwargs: dict[str, object], pg_url: str
) -> None:
    """``sandbox-platform readiness`` on a fresh database (``db upgrade`` not run yet): NO-GO
    with MIGRATIONS_BEHIND, and the NO-GO alert's database sink says in one short line that
    it could not store it, with no SQL error dump or traceback beside the report."""
    env = platform_env(**{**platform_settings_kwargs, "database_url": pg_url})
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox_platform", "readiness", "--timeout", "1"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert MIGRATIONS_BEHIND in proc.stdout and "NO-GO" in proc.stdout, output
    assert "readiness_no_go" in proc.stderr, output  # the alert was raised (and logged)
    assert "alert_sink_failed" not in output
    assert "Traceback" not in output
    assert 'relation "sp_alerts" does not exist' not in output
    assert [line for line in proc.stderr.splitlines() if "alerts_not_stored" in line], output
