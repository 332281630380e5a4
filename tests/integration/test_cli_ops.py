"""The operator commands as an operator runs them: ``alerts``, ``dry-runs``, ``jobs show``,
``governor``, ``dead-letters``, ``settings --json`` and ``status``, as subprocesses over a
migrated SQLite database and the test Redis, with the records seeded directly."""

from __future__ import annotations

import getpass
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select

from sandbox_platform.coordination.governor import Governor
from sandbox_platform.core.embedded import socket_path_for
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import AuditEvent, DeadLetter, DryRunEvent, Effect, JobRun, utcnow
from sandbox_platform.ops.alerts import Alert, DatabaseSink
from tests.helpers import platform_env, wait_until

CARD = "4111 1111 1111 1111"
PASSWORD = "hunter2-very-secret"
API_KEY = "sk_live_4f9a8b7c6d"
SECRETS = (CARD, CARD.replace(" ", ""), PASSWORD, API_KEY)
CORR = "corr-order-42"


# -- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def env(platform_settings_kwargs: dict[str, object]) -> dict[str, str]:
    """The commands' environment: the test's settings, readiness quick, a known width."""
    child = platform_env(**platform_settings_kwargs, readiness_timeout=1)
    child["COLUMNS"] = "250"
    return child


@pytest.fixture
def db_url(platform_settings_kwargs: dict[str, object]) -> str:
    return str(platform_settings_kwargs["database_url"])


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox_platform", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(env: dict[str, str], *args: str) -> str:
    """Run a command that must succeed; its stdout."""
    proc = cli(env, *args)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc.stdout


def as_json(env: dict[str, str], *args: str) -> Any:
    return json.loads(ok(env, *args, "--json"))


def one_line_error(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def at(seconds: float) -> datetime:
    """A fixed time a few minutes ago plus ``seconds``: seeds get a known order."""
    return utcnow().replace(microsecond=0) - timedelta(minutes=10) + timedelta(seconds=seconds)


def seed_alerts(db_url: str) -> None:
    sink = DatabaseSink(db_url)
    sink.send(Alert("info", "heartbeat_recovered", "ticks resumed", created_at=at(1)))
    sink.send(Alert("warning", "governor_denied", "stripe denied", created_at=at(2)))
    sink.send(Alert("error", "task_failed", "charge failed", correlation_id=CORR, created_at=at(5)))


def job_run(task_id: str, attempt: int, state: str, seconds: float, error: str | None) -> JobRun:
    return JobRun(
        task_id=task_id,
        task_name="shop.charge",
        correlation_id=CORR,
        mode="sandbox",
        state=state,
        attempt=attempt,
        error=error,
        started_at=at(seconds),
    )


def dry_run(action: str, arguments: dict[str, Any], correlation_id: str, seconds: float) -> Any:
    return DryRunEvent(
        action=action,
        function=f"shop.{action}",
        arguments=arguments,
        mode="sandbox",
        task_id="t-2",
        correlation_id=correlation_id,
        created_at=at(seconds),
    )


def seed_records(db_url: str) -> None:
    """One order's story under CORR (the effect last: its time is now), a dry run of another
    job, and a dead letter with a card number and a password in its arguments."""
    charge_args = {"args": ["order-42", 4200], "kwargs": {"api_key": API_KEY}}
    with session_scope(db_url) as session:
        session.add_all(
            [
                job_run("t-1", 1, "retrying", 3, "card declined"),
                dry_run("charge_card", charge_args, CORR, 4),
                job_run("t-2", 2, "failed", 4.5, None),
                dead_letter(at(6)),
                Effect(idempotency_key="order-42", task_id="t-2", correlation_id=CORR),
                dry_run("send_email", {"args": ["a@example.com"]}, "corr-other", 2),
            ]
        )


def dead_letter(created_at: datetime) -> DeadLetter:
    return DeadLetter(
        task_id="t-2",
        task_name="tests.add_mark",
        reason="retries_exhausted",
        detail="card declined",
        message={
            "task": "tests.add_mark",
            "args": ["cli-replay-marks", CARD],
            "kwargs": {"password": PASSWORD},
            "headers": {},
            "queue": None,
        },
        correlation_id=CORR,
        created_at=created_at,
    )


def audit_rows(db_url: str, action: str) -> list[AuditEvent]:
    with session_scope(db_url) as session:
        query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        rows = list(session.scalars(query))
        session.expunge_all()
        return rows


# -- alerts ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_alerts_list_filters_by_severity_and_kind(env: dict[str, str], db_url: str) -> None:
    seed_alerts(db_url)
    everything = as_json(env, "alerts", "list", "--limit", "3")
    assert [a["kind"] for a in everything] == [
        "task_failed",
        "governor_denied",
        "heartbeat_recovered",
    ]
    assert [a["severity"] for a in as_json(env, "alerts", "list", "--severity", "warning")] == [
        "error",
        "warning",
    ]
    only = as_json(env, "alerts", "list", "--kind", "governor_denied")
    assert [a["message"] for a in only] == ["stripe denied"]

    table = ok(env, "alerts", "list", "--severity", "error")
    assert "task_failed" in table and CORR in table
    assert "heartbeat_recovered" not in table

    line = one_line_error(cli(env, "alerts", "list", "--severity", "loud"), 2)
    assert "severity" in line


class Tail:
    """A running ``alerts tail``; its stderr is read line by line on a thread."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        command = [sys.executable, "-m", "sandbox_platform", "alerts", "tail", *args]
        self.proc = subprocess.Popen(
            [*command, "--interval", "0.1"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.errors: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        self.errors.extend(iter(self.proc.stderr.readline, ""))

    def wait_following(self) -> None:
        wait_until(
            lambda: (
                any("following" in line for line in self.errors) or self.proc.poll() is not None
            ),
            timeout=30,
            message="alerts tail did not start following",
        )
        assert self.proc.poll() is None, self.errors

    def finished(self) -> str:
        """Wait for the exit (the deadline is the test's); stdout."""
        self.proc.wait(timeout=30)
        self.reader.join(10)
        assert self.proc.stdout is not None
        return self.proc.stdout.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def tails() -> Iterator[list[Tail]]:
    """``alerts tail`` processes a test starts; each is stopped by its pid afterwards."""
    started: list[Tail] = []
    yield started
    for tail in started:
        tail.stop()


def test_alerts_tail_prints_an_alert_stored_after_it_started(
    env: dict[str, str], db_url: str, tails: list[Tail]
) -> None:
    seed_alerts(db_url)
    tail = Tail(env, "--severity", "error", "--limit", "1", "--count", "1")
    tails.append(tail)
    tail.wait_following()
    sink = DatabaseSink(db_url)
    sink.send(Alert("info", "below_the_floor", "not shown"))
    sink.send(Alert("critical", "heartbeat_stale", "no tick for 40s", correlation_id="c-new"))
    out = tail.finished()
    assert tail.proc.returncode == 0, tail.errors
    lines = out.strip().splitlines()
    assert "task_failed" in lines[0]  # the newest stored one, printed first
    assert "heartbeat_stale" in lines[-1] and "c-new" in lines[-1]
    assert "below_the_floor" not in out


def test_alerts_tail_ends_with_exit_0_on_sigint(env: dict[str, str], tails: list[Tail]) -> None:
    tail = Tail(env, "--json")
    tails.append(tail)
    tail.wait_following()
    tail.proc.send_signal(signal.SIGINT)
    assert tail.finished() == ""
    assert tail.proc.returncode == 0, tail.errors
    assert not any("Traceback" in line for line in tail.errors)


# -- dry runs, jobs, dead letters --------------------------------------------------------------


@pytest.mark.slow
def test_dry_runs_list_filters_and_masks_arguments(env: dict[str, str], db_url: str) -> None:
    seed_records(db_url)
    events = as_json(env, "dry-runs", "list")
    assert [e["action"] for e in events] == ["send_email", "charge_card"]
    charge = as_json(env, "dry-runs", "list", "--action", "charge_card")
    assert len(charge) == 1
    assert charge[0]["function"] == "shop.charge_card"
    assert charge[0]["task_id"] == "t-2" and charge[0]["correlation_id"] == CORR
    assert charge[0]["arguments"]["args"] == ["order-42", 4200]

    table = ok(env, "dry-runs", "list", "--action", "charge_card")
    assert "shop.charge_card" in table and "order-42" in table and CORR in table
    assert "send_email" not in table
    assert API_KEY not in table and API_KEY not in json.dumps(events)


@pytest.mark.slow
def test_jobs_show_lists_one_correlation_id_in_time_order(env: dict[str, str], db_url: str) -> None:
    seed_alerts(db_url)
    seed_records(db_url)
    shown = as_json(env, "jobs", "show", CORR)
    assert shown["matched"] == {"kind": "correlation_id", "value": CORR}
    entries = shown["entries"]
    assert [e["kind"] for e in entries] == [
        "run",
        "dry_run",
        "run",
        "alert",
        "dead_letter",
        "effect",
    ]
    assert [e["attempt"] for e in entries if e["kind"] == "run"] == [1, 2]
    assert [e["alert_kind"] for e in entries if e["kind"] == "alert"] == ["task_failed"]
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)
    assert all(e.get("correlation_id", CORR) == CORR for e in entries)

    table = ok(env, "jobs", "show", CORR)
    order = ["card declined", "charge_card", "(attempt 2)", "task_failed", "retries_exhausted"]
    positions = [table.index(text) for text in order]
    assert positions == sorted(positions), table
    assert "send_email" not in table

    line = one_line_error(cli(env, "jobs", "show", "corr-nobody"), 1)
    assert "task id, correlation id or idempotency key 'corr-nobody'" in line

    # the task id of one of its jobs, or the key of its effect: the same story, said so
    by_task = as_json(env, "jobs", "show", "t-2")
    assert by_task["matched"] == {"kind": "task_id", "value": "t-2"}
    assert by_task["correlation_id"] == CORR and by_task["entries"] == [
        {**entry, **({"matched_job": True} if entry.get("task_id") == "t-2" else {})}
        for entry in entries
    ]
    by_key = as_json(env, "jobs", "show", "order-42")
    assert by_key["matched"] == {"kind": "idempotency_key", "value": "order-42"}
    assert by_key["task_id"] == "t-2" and len(by_key["entries"]) == len(entries)
    assert "matched task id t-2 (correlation id corr-order-42)" in ok(env, "jobs", "show", "t-2")


@pytest.mark.slow
def test_dead_letter_secrets_never_appear_in_any_output(env: dict[str, str], db_url: str) -> None:
    seed_records(db_url)
    outputs = [
        cli(env, *args)
        for args in (
            ("dead-letters", "list"),
            ("dead-letters", "list", "--json"),
            ("jobs", "show", CORR),
            ("jobs", "show", CORR, "--json"),
            ("dry-runs", "list"),
        )
    ]
    for proc in outputs:
        assert proc.returncode == 0, proc.stderr
        for secret in SECRETS:
            assert secret not in proc.stdout + proc.stderr
    listed = json.loads(outputs[1].stdout)
    assert listed[0]["message"]["args"] == ["cli-replay-marks", "***1111"]
    assert listed[0]["message"]["kwargs"] == {"password": "***"}
    assert "***1111" in outputs[0].stdout and "tests.add_mark" in outputs[0].stdout


def test_dead_letter_replay_records_an_audit_event(
    env: dict[str, str], db_url: str, redis_client: redis.Redis
) -> None:
    with session_scope(db_url) as session:
        row = dead_letter(utcnow())
        session.add(row)
        session.flush()
        letter_id = row.id
    ok(env, "dead-letters", "replay", str(letter_id), "--app", "tests.worker_app")
    with session_scope(db_url) as session:
        replayed = session.get(DeadLetter, letter_id)
        assert replayed is not None and replayed.replay_task_id
        task_id = replayed.replay_task_id
    [audit] = audit_rows(db_url, "dead_letter.replay")
    assert (audit.target, audit.source, audit.actor) == (str(letter_id), "cli", getpass.getuser())
    assert audit.detail["replay_task_id"] == task_id


# -- governor ----------------------------------------------------------------------------------


def test_governor_show_reports_limits_tokens_and_counts(
    env: dict[str, str], redis_client: redis.Redis
) -> None:
    governor = Governor(redis_client, "sp")
    governor.set_limit("stripe", 10, 1.0)
    governor.set_limit("stripe", 1000, 86400, name="daily", capacity=500)
    governor.set_limit("mailer", 1, 60.0)
    assert governor.acquire("stripe", 3).allowed
    assert governor.acquire("mailer").allowed
    assert not governor.acquire("mailer").allowed

    report = as_json(env, "governor", "show")
    assert sorted(report) == ["mailer", "stripe"]
    stripe = {limit["name"]: limit for limit in report["stripe"]["limits"]}
    assert stripe["daily"]["capacity"] == 500 and stripe["daily"]["limit"] == 1000
    assert 497 <= stripe["daily"]["tokens"] < 498  # refills 1000 a day: a sliver since
    assert 7 <= stripe["per_1s"]["tokens"] <= 10
    assert (report["stripe"]["admitted"], report["stripe"]["denials"]) == (1, 0)
    assert (report["mailer"]["admitted"], report["mailer"]["denials"]) == (1, 1)

    table = ok(env, "governor", "show")
    assert "stripe" in table and "daily" in table and "1000 per 86400s" in table


def test_governor_set_limit_changes_it_and_stores_an_audit_event(
    env: dict[str, str], db_url: str, redis_client: redis.Redis
) -> None:
    governor = Governor(redis_client, "sp")
    governor.set_limit("stripe", 10, 1.0)
    out = ok(env, "governor", "set-limit", "stripe", "25", "1", "--capacity", "50")
    assert "stripe" in out
    [limit] = governor.limits("stripe")
    assert (limit.name, limit.limit, limit.per_seconds, limit.capacity) == ("per_1s", 25, 1.0, 50)
    ok(env, "governor", "set-limit", "stripe", "1000", "86400", "--name", "daily")
    assert [lim.name for lim in governor.limits("stripe")] == ["daily", "per_1s"]

    first, second = audit_rows(db_url, "governor.set_limit")
    assert (first.target, first.source, first.actor) == ("stripe", "cli", getpass.getuser())
    assert first.detail["limit"] == 25 and first.detail["capacity"] == 50
    assert first.detail["previous"]["limit"] == 10
    assert second.detail["name"] == "daily" and second.detail["previous"] is None


BAD_NUMBERS = [
    "ten 1",
    "-5 1",
    "1.5 1",
    "5 0",
    "5 soon",
    "5 inf",
    "5 1 --capacity x",
    "5 1 --capacity 0",
]


@pytest.mark.parametrize("numbers", BAD_NUMBERS)
def test_governor_set_limit_bad_numbers_exit_2_in_one_line(
    env: dict[str, str], db_url: str, redis_client: redis.Redis, numbers: str
) -> None:
    one_line_error(cli(env, "governor", "set-limit", "stripe", *numbers.split()), 2)
    assert Governor(redis_client, "sp").limits("stripe") == []
    assert audit_rows(db_url, "governor.set_limit") == []


# -- settings and status -----------------------------------------------------------------------


def test_settings_json_is_typed_masked_and_names_the_broker(
    platform_settings_kwargs: dict[str, object], tmp_path: Path
) -> None:
    settings = {
        **platform_settings_kwargs,
        "broker_url": "redis://ops:brokerpass@127.0.0.1:6379/12",
        "dashboard_password": "dash-pass-123",
        "alert_webhook_url": "https://hook:webhookpass@hooks.example/alerts",
        "skip_readiness": "true",
    }
    proc = cli(platform_env(**settings), "settings", "--json")
    assert proc.returncode == 0, proc.stderr
    values = json.loads(proc.stdout)
    assert values["visibility_timeout"] == 3600 and isinstance(values["visibility_timeout"], int)
    assert values["heartbeat_interval"] == 10.0 and isinstance(values["heartbeat_interval"], float)
    assert values["skip_readiness"] is True and values["log_task_events"] is False
    assert values["dashboard_password"] == "***"
    assert values["broker_url_in_use"] == "redis://ops:***@127.0.0.1:6379/12"
    assert values["alert_webhook_url"] == "https://hooks.example/***"  # its path is a secret
    for secret in ("brokerpass", "dash-pass-123", "webhookpass"):
        assert secret not in proc.stdout

    data_dir = tmp_path / "no-redis-here"
    embedded = {"database_url": platform_settings_kwargs["database_url"], "data_dir": data_dir}
    values = json.loads(ok(platform_env(**embedded), "settings", "--json"))
    assert values["broker_url_in_use"] == f"embedded redis-server (unix socket in {data_dir})"
    assert not socket_path_for(data_dir).exists()  # said, not started


def test_status_for_a_person_has_sections_and_no_json(
    env: dict[str, str], db_url: str, redis_client: redis.Redis
) -> None:
    seed_alerts(db_url)
    Governor(redis_client, "sp").set_limit("stripe", 10, 1.0)
    out = ok(env, "status", "--app", "tests.worker_app")
    assert "{" not in out and "}" not in out
    for text in ("Readiness: NO-GO", "NO_WORKER", "Heartbeat", "Governor", "stripe", "10 per 1s"):
        assert text in out, out
    assert "alerts stored" in out and "completed jobs" in out
