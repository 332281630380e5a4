"""Secret arguments end to end, on a real worker, Redis and PostgreSQL (issue 19).

A job carrying five kinds of secret (a card number, a password passed by position, a bearer
token, an AWS-style API key, a CVV as a keyword) fails, is dead-lettered, listed by the CLI
and the dashboard, replayed, and succeeds; its message is captured queued and unacknowledged.
Then every table, every CLI output, the dashboard's pages and JSON, the worker's and beat's
logs, Flower's task API, the OTel spans, the result backend, the idempotency record and the
captured messages are searched for each secret value in plain, base64, hex and JSON-escaped
form: none may hold one.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select

from sandbox_platform import bind_correlation_id
from sandbox_platform.core.secret_keys import new_fingerprint_key, new_key
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import DeadLetter, JobRun
from sandbox_platform.procs.worker import WorkerSubprocess
from tests.helpers import platform_env, wait_until
from tests.integration.test_flower import _free_port, _get, _started
from tests.otlp_receiver import OtlpReceiver
from tests.pools import ON_BOTH_POOLS, POOLS, SOLO_ONLY
from tests.reliability.test_secrets_at_rest import _stored_rows
from tests.secret_search import dump_redis, leaks, record_pages
from tests.secret_tasks import (
    BARRIER,
    DECLINE,
    EFFECTS,
    HOLD,
    STARTED,
    received,
    register_secret_tasks,
)

pytestmark = [pytest.mark.slow, ON_BOTH_POOLS]

CARD = "5555555555554444"
PASSWORD = "pa55-Word-correct-horse"
TOKEN = "bt-Zm9vYmFyLXRva2VuLXZhbHVlcw"
API_KEY = "AKIAZ7Q4EXAMPLEKEY42"
CVV = "9471"
SECRETS = (CARD, PASSWORD, TOKEN, API_KEY, CVV)
CORRELATION = "corr-secret-arguments"
KEY_A = new_key("key-a")
KEY_B = new_key("key-b")
FINGERPRINT = new_fingerprint_key()
FLOWER_AUTH = "ops:flower-secret-test"


@pytest.fixture
def platform_settings_kwargs(pg_settings_kwargs, redis_url):  # type: ignore[no-untyped-def]
    return {
        **pg_settings_kwargs,
        "secret_keys": KEY_A,
        "secret_fingerprint_key": FINGERPRINT,
        "result_backend": redis_url,
    }


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", running.url)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "sp-secret-test")
        monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
        monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
        yield running


def _cli(env: dict[str, str], *args: str, code: int = 0) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "sandbox_platform", *args],
        env={**env, "SANDBOX_PLATFORM_APP": "tests.faults_app"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == code, done.stdout + done.stderr
    return done.stdout + done.stderr


def _secret_check(env: dict[str, str]) -> dict[str, Any]:
    """The ``secret_keys`` check of ``readiness --json``."""
    done = subprocess.run(
        [sys.executable, "-m", "sandbox_platform", "readiness", "--json"],
        env={**env, "SANDBOX_PLATFORM_APP": "tests.faults_app"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    checks = json.loads(done.stdout)["checks"]
    (check,) = [check for check in checks if check["name"] == "secret_keys"]
    return dict(check)


def _no_leak(where: str, text: str) -> None:
    found = leaks(text, SECRETS)
    assert not found, f"{where} holds in clear: {found}"


def _effects(client: redis.Redis) -> list[str]:
    return [item.decode() for item in client.lrange(EFFECTS, 0, -1)]


def test_secrets_leave_no_trace_from_enqueue_to_replay(
    platform_app,
    platform_settings_kwargs,
    pg_databases,
    redis_client,
    dashboard_factory,
    receiver,
    tmp_path: Path,
) -> None:
    sandbox_db, _ = pg_databases
    tasks = register_secret_tasks(platform_app)
    env = platform_env(**platform_settings_kwargs, readiness_timeout=2)
    redis_client.set(HOLD, 1)
    redis_client.sadd(DECLINE, "order-1")

    with bind_correlation_id(CORRELATION):
        first = tasks.pay.delay("order-1", CARD, PASSWORD, TOKEN, API_KEY, cvv=CVV)
    queued = dump_redis(redis_client)  # the message, queued
    assert first.id in queued

    port = _free_port()
    hostname = f"secrets-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    worker = WorkerSubprocess(
        "tests.faults_app",
        hostname=hostname,
        env=platform_env(**platform_settings_kwargs, otel=True),
        log_path=tmp_path / "worker.log",
        extra_args=["--events"],
    )
    flower_command = [sys.executable, "-m", "sandbox_platform", "flower", "--address"]
    flower_command += ["127.0.0.1", "--port", str(port)]
    beat_command = [sys.executable, "-m", "sandbox_platform", "beat"]
    with (
        _started(
            flower_command,
            {**env, "SANDBOX_PLATFORM_FLOWER_BASIC_AUTH": FLOWER_AUTH},
            tmp_path / "flower.log",
        ),
        _started(beat_command, env, tmp_path / "beat.log"),
    ):
        wait_until(
            lambda: _get(port, "/api/tasks", FLOWER_AUTH)[0] == 200,
            timeout=60,
            interval=0.2,
            message=f"Flower did not start; see {tmp_path}/flower.log",
        )
        try:
            worker.start()  # (a solo worker holding the job answers no ping: not waited for)
            wait_until(
                lambda: int(redis_client.get(STARTED) or 0) >= 1,
                timeout=90,
                message=f"the job never started; see {tmp_path}/worker.log",
            )
            unacked = dump_redis(redis_client)  # the message, delivered and not acknowledged
            assert first.id in unacked
            redis_client.delete(HOLD)

            def dead_letter() -> DeadLetter | None:
                with session_scope(sandbox_db) as session:
                    letter = session.scalar(select(DeadLetter))
                    if letter is not None:
                        session.expunge(letter)
                    return letter

            letter = wait_until(dead_letter, timeout=60, message="the job was not dead-lettered")
            sealed = letter.message["args"]
            assert sealed[0] == "order-1"  # not secret: in clear
            assert all(item["$sp_secret"] == 1 for item in sealed[1:])
            assert letter.message["kwargs"]["cvv"]["kid"] == "key-a"

            shown = [
                _cli(env, "dead-letters", "list", "--json"),
                _cli(env, "dead-letters", "list"),
                _cli(env, "dry-runs", "list", "--json"),
                _cli(env, "alerts", "list", "--json"),
                _cli(env, "jobs", "show", CORRELATION, "--json"),
                _cli(env, "dry-runs", "list"),
                _cli(env, "alerts", "list"),
                _cli(env, "jobs", "show", CORRELATION),
            ]
            assert "declined card" in shown[0]

            redis_client.srem(DECLINE, "order-1")
            _cli(env, "dead-letters", "replay", str(letter.id))
            effects = wait_until(
                lambda: _effects(redis_client), timeout=60, message="the replay did not succeed"
            )
            assert effects == [f"order-1 {received(CARD, PASSWORD, TOKEN, API_KEY, CVV)}"]

            def succeeded() -> bool:
                with session_scope(sandbox_db) as session:
                    runs = session.scalars(select(JobRun)).all()
                    return any(run.state == "succeeded" for run in runs)

            wait_until(succeeded, timeout=60, message="no succeeded run record")
            shown.append(_cli(env, "jobs", "show", CORRELATION, "--json"))
            # the same key and arguments again: the first job's id (their HMAC fingerprints
            # match, though each enqueue seals with a new nonce; else IdempotencyConflict)
            again = tasks.pay.delay("order-1", CARD, PASSWORD, TOKEN, API_KEY, cvv=CVV)
            assert again.id == first.id
            flower = wait_until(
                lambda: _flower_tasks(port),
                timeout=60,
                interval=0.5,
                message="Flower never showed the jobs",
            )
        finally:
            worker.stop(timeout=30)
        served = dashboard_factory("tests.faults_app")
        pages = record_pages(served, CORRELATION)

    assert len(_effects(redis_client)) == 1  # the re-enqueue had no second effect
    worker_log = worker.log_text()
    # the task's own lines (stdlib logging, print) are written, the bare values masked
    assert "charging *** for order-1" in worker_log
    assert "calling the partner with *** ***" in worker_log
    _no_leak("the queued message", queued)
    _no_leak("the unacknowledged message", unacked)
    _no_leak("the database", json.dumps(_stored_rows(sandbox_db, skip=set()), default=str))
    _no_leak("the CLI", "\n".join(shown))
    _no_leak("the dashboard", pages)
    _no_leak("the worker log", worker_log)
    _no_leak("the beat log", (tmp_path / "beat.log").read_text())
    _no_leak("Flower's task API", flower)
    spans = receiver.snapshot()
    assert spans, "no span was exported"
    _no_leak("the OTel spans", repr(spans))
    final = dump_redis(redis_client)
    assert f"celery-task-meta-{first.id}" in final  # the result backend holds the failure
    assert "pay:order-1" in final  # and the idempotency record is there to be searched
    _no_leak("Redis (result backend, idempotency record, queues)", final)


def _flower_tasks(port: int) -> str | None:
    status, body = _get(port, "/api/tasks", FLOWER_AUTH)
    if status != 200:
        return None
    tasks: dict[str, Any] = json.loads(body)
    states = {task.get("state") for task in tasks.values()}
    return body.decode() if {"FAILURE", "SUCCESS"} <= states else None


# -- rotation, undecryptable messages ----------------------------------------------------


def _flip_a_byte(envelope: dict[str, Any]) -> dict[str, Any]:
    raw = bytearray(base64.urlsafe_b64decode(envelope["ct"] + "=" * (-len(envelope["ct"]) % 4)))
    raw[-1] ^= 0x01
    return {**envelope, "ct": base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")}


def _sealed(ring_text: str, name: str, value: Any) -> dict[str, Any]:
    from sandbox_platform.core.sealing import seal_value
    from sandbox_platform.core.secret_keys import parse_key_ring

    return seal_value(parse_key_ring(ring_text), "secrets.pay", name, value)


def _dead_letters(url: str) -> list[DeadLetter]:
    with session_scope(url) as session:
        letters = list(session.scalars(select(DeadLetter).order_by(DeadLetter.id)).all())
        for letter in letters:
            session.expunge(letter)
        return letters


def test_a_wrong_key_or_a_flipped_byte_dead_letters_the_job_with_no_effect(
    platform_app, worker_factory, pg_databases, redis_client
) -> None:
    sandbox_db, _ = pg_databases
    good = {
        name: _sealed(KEY_A, name, value)
        for name, value in zip(("card", "password", "token", "api_key"), SECRETS[:4], strict=True)
    }
    wrong_key = {**good, "card": _sealed(KEY_B, "card", CARD)}  # sealed under a key not held
    flipped = {**good, "password": _flip_a_byte(good["password"])}
    cvv = _sealed(KEY_A, "cvv", CVV)
    for order, sealed in (("order-wrong-key", wrong_key), ("order-flipped", flipped)):
        platform_app.send_task(
            "secrets.pay",
            args=[order, sealed["card"], sealed["password"], sealed["token"], sealed["api_key"]],
            kwargs={"cvv": cvv},
        )
    worker = worker_factory(platform_app, "tests.faults_app")
    letters = wait_until(
        lambda: (found := _dead_letters(sandbox_db)) and len(found) == 2 and found,
        timeout=60,
        message="the two jobs were not dead-lettered",
    )
    assert {letter.reason for letter in letters} == {"secret_undecryptable"}
    details = {letter.message["args"][0]: letter.detail or "" for letter in letters}
    assert "'key-b'" in details["order-wrong-key"] and "card" in details["order-wrong-key"]
    assert "'key-a'" in details["order-flipped"] and "does not verify" in details["order-flipped"]
    assert redis_client.get(STARTED) is None and _effects(redis_client) == []  # no body ran
    worker.stop(timeout=30)
    _no_leak("the worker log", worker.log_text())


def test_a_short_secret_is_masked_as_a_whole_token_only(
    platform_app, worker_factory, redis_client
) -> None:
    tasks = register_secret_tasks(platform_app)
    task_id = f"job91234abc-{uuid.uuid4().hex}"  # holds the pin's digits inside a token
    tasks.short.apply_async(("123", "label-x"), task_id=task_id)
    worker = worker_factory(platform_app, "tests.faults_app")
    wait_until(lambda: "label-x" in worker.log_text(), timeout=60, message="no line of the job")
    worker.stop(timeout=30)
    log = worker.log_text()
    assert f"pin *** for label-x, task {task_id}" in log
    assert "pin 123" not in log


def test_jobs_in_flight_together_each_mask_their_own_secrets(
    platform_app, worker_factory, worker_pool, redis_client
) -> None:
    """The mask is the job's (its context), on a threads worker with 8 jobs in flight too."""
    tasks = register_secret_tasks(platform_app)
    redis_client.set(BARRIER, POOLS[worker_pool])
    pins = {f"label-{n}": f"pin-{n}-{uuid.uuid4().hex[:10]}" for n in range(8)}
    for label, pin in pins.items():
        tasks.short.delay(pin, label)
    worker = worker_factory(platform_app, "tests.faults_app")
    wait_until(
        lambda: all(f"for {label}," in worker.log_text() for label in pins),
        timeout=90,
        message="not every job logged",
    )
    worker.stop(timeout=30)
    log = worker.log_text()
    for label in pins:
        assert f"pin *** for {label}, task " in log
    _no_leak("the worker log", log)
    assert not [pin for pin in pins.values() if pin in log]


@SOLO_ONLY
def test_a_key_rotation_loses_no_job_no_dead_letter_and_no_dedupe(
    platform_app, platform_settings_kwargs, worker_factory, pg_databases, redis_client
) -> None:
    """Jobs sealed under A run after the keys become "B,A"; a dead letter written under A
    replays under "B,A"; ``secrets reencrypt`` then lets A be dropped; the same idempotency
    key and arguments dedupe across the rotation (the fingerprint key does not rotate)."""
    sandbox_db, _ = pg_databases
    tasks = register_secret_tasks(platform_app)  # the producer: keys "A"
    args = (CARD, PASSWORD, TOKEN, API_KEY)
    redis_client.sadd(DECLINE, "rot-2", "rot-3")
    first = tasks.pay.delay("rot-1", *args, cvv=CVV)
    for order in ("rot-2", "rot-3"):
        tasks.pay.delay(order, *args, cvv=CVV)
    rotated = {"secret_keys": f"{KEY_B},{KEY_A}"}
    worker = worker_factory(platform_app, "tests.faults_app", **rotated)
    wait_until(lambda: len(_dead_letters(sandbox_db)) == 2, timeout=60, message="no dead letters")
    assert [effect.split()[0] for effect in _effects(redis_client)] == ["rot-1"]
    letters = {letter.message["args"][0]: letter for letter in _dead_letters(sandbox_db)}
    assert {letter.message["kwargs"]["cvv"]["kid"] for letter in letters.values()} == {"key-a"}

    env_ba = platform_env(**{**platform_settings_kwargs, **rotated})
    redis_client.srem(DECLINE, "rot-2", "rot-3")
    _cli(env_ba, "dead-letters", "replay", str(letters["rot-2"].id))  # under "B,A"
    wait_until(lambda: len(_effects(redis_client)) == 2, timeout=60, message="no replay")
    worker.stop(timeout=30)

    env_b = platform_env(**{**platform_settings_kwargs, "secret_keys": KEY_B})
    assert _secret_check(env_b)["code"] == "SECRET_KEY_MISSING"
    _cli(env_ba, "secrets", "reencrypt")
    (moved,) = [x for x in _dead_letters(sandbox_db) if x.message["args"][0] == "rot-3"]
    assert {moved.message["args"][1]["kid"], moved.message["kwargs"]["cvv"]["kid"]} == {"key-b"}
    assert _secret_check(env_b)["ok"], _secret_check(env_b)

    only_b = worker_factory(platform_app, "tests.faults_app", secret_keys=KEY_B)  # A dropped
    _cli(env_b, "dead-letters", "replay", str(moved.id))
    wait_until(lambda: len(_effects(redis_client)) == 3, timeout=60, message="no replay under B")
    only_b.stop(timeout=30)
    assert sorted(e.split()[0] for e in _effects(redis_client)) == ["rot-1", "rot-2", "rot-3"]

    # a producer on "B,A" (sealing under B) re-submits rot-1: the first job's id, no conflict
    from sandbox_platform.app.factory import create_app, release_app
    from sandbox_platform.core.settings import load_settings

    producer = create_app(load_settings(**{**platform_settings_kwargs, **rotated}))
    try:
        again = register_secret_tasks(producer).pay.delay("rot-1", *args, cvv=CVV)
    finally:
        release_app(producer)
    assert again.id == first.id
