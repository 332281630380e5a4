"""One job's bad idempotency record fails that job only; expiring queues and a caller's
``producer.batch()`` dedupe like any other (real workers, Redis and database).

Regressions (issue 18): an idempotent task on a queue declared with ``expires`` failed every
job with ``server:ResponseError`` (its enqueue wrote the record as a string); a record that
became a string after its claim made the consumer's fetch script fail as a whole, and the
worker died (``Unrecoverable error``) with whatever else it was running.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import Alert, DeadLetter, JobRun
from tests.broker_tasks import FOREIGN_VALUE, register_broker_tasks
from tests.helpers import wait_until

pytestmark = pytest.mark.slow
WORKER_APP = "tests.broker_app"
JOBS, BREAK_AT = 100, 50


def _runs(url: str, task_name: str) -> dict[str, JobRun]:
    with session_scope(url) as session:
        runs = list(session.scalars(select(JobRun).where(JobRun.task_name == task_name)))
        session.expunge_all()
    return {run.task_id: run for run in runs}


def _alerts(url: str, kind: str) -> list[Alert]:
    with session_scope(url) as session:
        alerts = list(session.scalars(select(Alert).where(Alert.kind == kind)))
        session.expunge_all()
    return alerts


def test_an_idempotent_task_on_an_expiring_queue_runs_and_dedupes(
    platform_app, worker_factory, redis_client
) -> None:
    tasks = register_broker_tasks(platform_app)
    worker = worker_factory(platform_app, WORKER_APP)
    runs = f"expiring-runs-{uuid.uuid4().hex[:6]}"
    first = tasks.expiring_once.delay("e-1", runs)
    assert tasks.expiring_once.delay("e-1", runs).id == first.id
    assert 0 < redis_client.pttl("expiring.sandbox") <= 600_000  # kombu's expiring branch

    with platform_app.producer_or_acquire() as producer, producer.batch():
        batched = tasks.expiring_once.apply_async(("e-2", runs), producer=producer)
        again = tasks.expiring_once.apply_async(("e-2", runs), producer=producer)
    assert again.id == batched.id

    for key in ("e-1", "e-2"):
        record = f"sp:idem:r:{{broker.expiring_once:{key}}}"
        wait_until(lambda r=record: redis_client.hget(r, "state") == b"done", timeout=60)
    assert sorted(redis_client.lrange(runs, 0, -1)) == [b"e-1", b"e-2"]  # once each
    assert tasks.expiring_once.delay("e-1", runs).id == first.id  # done: still deduped
    assert "ResponseError" not in worker.log_text()


@pytest.mark.parametrize("pool", ["solo", "threads", "prefork"])
def test_a_record_turned_into_a_string_fails_its_own_job_only(
    pool, platform_app, worker_factory, redis_client, platform_settings_kwargs
) -> None:
    database = str(platform_settings_kwargs["database_url"])
    tasks = register_broker_tasks(platform_app)
    worker = worker_factory(platform_app, WORKER_APP, pool=pool)
    pid = worker.pid
    runs = f"broken-runs-{pool}-{uuid.uuid4().hex[:6]}"
    ids = {n: tasks.breaks_own_record.delay(n, runs, BREAK_AT).id for n in range(JOBS)}

    wait_until(lambda: redis_client.llen(runs) == JOBS, timeout=120, message="bodies ran")
    name = "broker.breaks_own_record"
    wait_until(lambda: len(_runs(database, name)) == JOBS, timeout=60, message="run records")
    records = _runs(database, name)
    broken_key = f"sp:idem:r:{{{name}:{BREAK_AT}-{runs}}}"
    broken = records[ids[BREAK_AT]]
    assert broken.state == "failed"
    assert broken_key in (broken.error or "") and "WRONGTYPE" in (broken.error or "")
    others = [records[ids[n]].state for n in range(JOBS) if n != BREAK_AT]
    assert others == ["succeeded"] * (JOBS - 1)
    for n in range(JOBS):
        if n != BREAK_AT:
            assert redis_client.hget(f"sp:idem:r:{{{name}:{n}-{runs}}}", "state") == b"done"
    assert redis_client.get(broken_key) == FOREIGN_VALUE.encode()  # left as it was

    wait_until(lambda: _alerts(database, "result_not_stored"), timeout=30, message="alert")
    (alert,) = [a for a in _alerts(database, "result_not_stored") if broken_key in a.message]
    assert alert.severity == "error"

    assert worker.alive() and worker.pid == pid  # the consumer process never restarted
    assert "Unrecoverable error" not in worker.log_text()


def test_a_record_of_another_type_at_admission_dead_letters_its_job_only(
    platform_app, worker_factory, redis_client, platform_settings_kwargs
) -> None:
    database = str(platform_settings_kwargs["database_url"])
    tasks = register_broker_tasks(platform_app)
    runs = f"admission-runs-{uuid.uuid4().hex[:6]}"
    ids = {n: tasks.breaks_own_record.delay(n, runs, -1).id for n in range(10)}
    name = "broker.breaks_own_record"
    bad_key = f"sp:idem:r:{{{name}:5-{runs}}}"
    redis_client.delete(bad_key)
    redis_client.set(bad_key, FOREIGN_VALUE)  # between its enqueue and its admission
    worker = worker_factory(platform_app, WORKER_APP)

    wait_until(lambda: redis_client.llen(runs) == 9, timeout=60, message="the others ran")
    wait_until(lambda: len(_runs(database, name)) == 10, timeout=60, message="run records")
    bad = _runs(database, name)[ids[5]]
    assert bad.state == "dead_lettered" and bad_key in (bad.error or "")
    with session_scope(database) as session:
        letter = session.scalars(select(DeadLetter).where(DeadLetter.task_id == ids[5])).one()
        assert letter.reason == "bad_record" and bad_key in (letter.detail or "")
    assert redis_client.get(bad_key) == FOREIGN_VALUE.encode()
    assert 5 not in {int(n) for n in redis_client.lrange(runs, 0, -1)}
    assert "Unrecoverable error" not in worker.log_text()
