"""Rotating the sealing key on PostgreSQL, as an operator does it with the command line: a
dead letter sealed under key A; readiness with the ring "B" names A (SECRET_KEY_MISSING),
with "B,A" passes; ``secrets reencrypt`` moves the dead letter to B; then "B" alone passes.
Also: what cannot be opened is listed (exit 1) while the rest moves, and queued and
unacknowledged messages on the Redis broker count as in use."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from sqlalchemy import select

from sandbox_platform.core.sealing import open_value, seal_value
from sandbox_platform.core.secret_keys import (
    KeyRing,
    new_fingerprint_key,
    new_key,
    parse_key_ring,
)
from sandbox_platform.db.deadletters import store_dead_letter
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import AuditEvent, DeadLetter
from sandbox_platform.guards.builtin.secrets import UNDECRYPTABLE
from sandbox_platform.ops.backlog import default_queue
from sandbox_platform.ops.readiness import CHECK_NAMES, SECRET_KEY_MISSING
from sandbox_platform.tasks import guarded_task
from tests.helpers import platform_env

TASK = "rotation.pay"
APP_MODULE = "rotation_app"
APP_SOURCE = f'''
from sandbox_platform import create_app, guarded_task
from sandbox_platform.core.exits import exit_on_settings_error

app = exit_on_settings_error(create_app)


@guarded_task(app, name="{TASK}", secret=["card", "cvv"])
def pay(order_id, card, *, cvv):
    return order_id
'''
KEY_A, KEY_B, KEY_C = new_key("A"), new_key("B"), new_key("C")
FINGERPRINT = new_fingerprint_key()
CARD, CVV = "4242 4242 4242 4242", 737
ONLY_SECRET_KEYS = ",".join(name for name in CHECK_NAMES if name != "secret_keys")


@pytest.fixture
def platform_settings_kwargs(pg_settings_kwargs: dict[str, object]) -> dict[str, object]:
    """PostgreSQL; the test process's app seals under key A."""
    return {**pg_settings_kwargs, "secret_keys": KEY_A, "secret_fingerprint_key": FINGERPRINT}


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """The operator's working directory, holding the app with secret arguments."""
    where = tmp_path / "app"
    where.mkdir()
    (where / f"{APP_MODULE}.py").write_text(APP_SOURCE)
    return where


def cli(
    settings: dict[str, object], app_dir: Path, keys: str, *args: str
) -> subprocess.CompletedProcess[str]:
    env = platform_env(**{**settings, "secret_keys": keys, "secret_fingerprint_key": FINGERPRINT})
    return subprocess.run(
        [sys.executable, "-m", "sandbox_platform", *args, "--app", APP_MODULE],
        env=env,
        cwd=app_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )


def readiness(settings: dict[str, object], app_dir: Path, keys: str) -> dict[str, Any]:
    """The ``secret_keys`` check of ``readiness --json`` with the ring ``keys``."""
    done = cli(
        settings, app_dir, keys, "readiness", "--json", "--timeout", "5", "--skip", ONLY_SECRET_KEYS
    )
    report = json.loads(done.stdout)
    assert [check["name"] for check in report["checks"]] == ["secret_keys"]
    assert done.returncode == (0 if report["go"] else 1), done.stderr
    check: dict[str, Any] = report["checks"][0]
    assert not any(key.split(":", 1)[1] in done.stdout + done.stderr for key in (KEY_A, KEY_B))
    return check


def ring(*entries: str) -> KeyRing:
    return parse_key_ring(",".join(entries))


def store(url: str, args: list[Any], kwargs: dict[str, Any]) -> int:
    message = {
        "task": TASK,
        "args": args,
        "kwargs": kwargs,
        "queue": "sandbox_platform.sandbox",
        "retries": 0,
        "headers": {"sp_correlation_id": "corr-rotation"},
    }
    return store_dead_letter(
        url,
        task_id=uuid.uuid4().hex,
        task_name=TASK,
        reason=UNDECRYPTABLE,
        detail=None,
        message=message,
        correlation_id="corr-rotation",
    )


def stored_message(url: str, dead_letter_id: int) -> dict[str, Any]:
    with session_scope(url) as session:
        row = session.get(DeadLetter, dead_letter_id)
        assert row is not None
        return dict(row.message)


def sealed_under_a() -> tuple[list[Any], dict[str, Any]]:
    a = ring(KEY_A)
    return (
        ["o-1", seal_value(a, TASK, "card", CARD)],
        {"cvv": seal_value(a, TASK, "cvv", CVV)},
    )


def test_rotation_from_a_to_b(
    platform_settings_kwargs: dict[str, object], pg_databases: tuple[str, str], app_dir: Path
) -> None:
    sandbox_db, _ = pg_databases
    settings = platform_settings_kwargs
    dead_letter_id = store(sandbox_db, *sealed_under_a())

    check = readiness(settings, app_dir, KEY_B)
    assert (check["ok"], check["code"]) == (False, SECRET_KEY_MISSING)
    assert "'A' by dead letters (2)" in check["message"], check["message"]
    assert "configured: B" in check["message"]

    check = readiness(settings, app_dir, f"{KEY_B},{KEY_A}")
    assert check["ok"], check["message"]
    assert "'A': dead letters (2)" in check["message"]

    done = cli(settings, app_dir, f"{KEY_B},{KEY_A}", "secrets", "reencrypt")
    assert done.returncode == 0, done.stderr
    assert "re-encrypted 2 envelope(s) in 1 dead letter(s) under key 'B'" in done.stdout

    message = stored_message(sandbox_db, dead_letter_id)
    card, cvv = message["args"][1], message["kwargs"]["cvv"]
    assert (card["kid"], cvv["kid"]) == ("B", "B")
    assert message["args"][0] == "o-1" and message["headers"]["sp_correlation_id"]
    b = ring(KEY_B)
    assert open_value(b, TASK, "card", card) == CARD
    assert open_value(b, TASK, "cvv", cvv) == CVV

    with session_scope(sandbox_db) as session:
        audit = session.scalars(select(AuditEvent)).one()
        assert (audit.action, audit.source) == ("secrets.reencrypt", "cli")
        assert audit.detail == {"rows": 1, "envelopes": 2, "key_id": "B"}

    again = cli(settings, app_dir, f"{KEY_B},{KEY_A}", "secrets", "reencrypt", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["envelopes"] == 0  # nothing left under A

    check = readiness(settings, app_dir, KEY_B)
    assert check["ok"], check["message"]
    assert "'B': dead letters (2)" in check["message"]


def test_what_cannot_be_opened_is_listed_and_the_rest_moves(
    platform_settings_kwargs: dict[str, object], pg_databases: tuple[str, str], app_dir: Path
) -> None:
    sandbox_db, _ = pg_databases
    settings = platform_settings_kwargs
    movable = store(sandbox_db, *sealed_under_a())
    lost = store(sandbox_db, ["o-2", seal_value(ring(KEY_C), TASK, "card", CARD)], {})
    keys = f"{KEY_B},{KEY_A}"

    dry = cli(settings, app_dir, keys, "secrets", "reencrypt", "--dry-run", "--json")
    assert dry.returncode == 1, dry.stderr
    result = json.loads(dry.stdout)
    assert (result["dry_run"], result["rows"], result["envelopes"]) == (True, 1, 2)
    assert stored_message(sandbox_db, movable)["args"][1]["kid"] == "A"  # nothing changed

    done = cli(settings, app_dir, keys, "secrets", "reencrypt")
    assert done.returncode == 1
    assert "re-encrypted 2 envelope(s) in 1 dead letter(s)" in done.stdout
    assert f"dead letter {lost}: key id 'C', argument 'card'" in done.stdout
    assert "cannot be opened" in done.stderr
    assert stored_message(sandbox_db, movable)["kwargs"]["cvv"]["kid"] == "B"
    assert stored_message(sandbox_db, lost)["args"][1]["kid"] == "C"

    check = readiness(settings, app_dir, keys)
    assert check["code"] == SECRET_KEY_MISSING and "'C' by dead letters (1)" in check["message"]


def test_queued_and_unacknowledged_messages_count_as_in_use(
    platform_app: Celery,
    platform_settings_kwargs: dict[str, object],
    redis_client: redis.Redis,
    app_dir: Path,
) -> None:
    @guarded_task(platform_app, name=TASK, secret=["card", "cvv"])
    def pay(order_id: str, card: str, *, cvv: int) -> str:
        return order_id

    pay.delay("o-3", CARD, cvv=CVV)  # sealed under A, waiting: no worker runs here
    queue = default_queue(platform_app)
    assert redis_client.llen(queue) == 1

    check = readiness(platform_settings_kwargs, app_dir, KEY_B)
    assert check["code"] == SECRET_KEY_MISSING
    assert f"'A' by queue {queue} (2)" in check["message"], check["message"]

    # a worker fetched it: kombu keeps it in the unacked hash until it is acknowledged
    raw = redis_client.rpop(queue)
    assert isinstance(raw, bytes)
    redis_client.hset("unacked", "tag-1", json.dumps([json.loads(raw), "", queue]))
    check = readiness(platform_settings_kwargs, app_dir, KEY_B)
    assert check["code"] == SECRET_KEY_MISSING
    assert "'A' by unacknowledged (2)" in check["message"], check["message"]
    assert readiness(platform_settings_kwargs, app_dir, f"{KEY_B},{KEY_A}")["ok"]
