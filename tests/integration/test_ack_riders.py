"""Idempotency results stored with the acknowledgement (broker/ack_riders.py), on a real Redis
and real workers.

A solo worker of the platform's transport stores an idempotent job's result in the script that
acknowledges the job (no ``idem_complete`` call of its own); a prefork worker, whose parent
acknowledges, stores it with its own call. Either way every record ends ``done`` with its
result. The scripts themselves: a completion is stored before
the acknowledgement in the same call, and one whose token is stale is refused and reported.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis

from sandbox_platform.broker.lua import TRANSPORT_SCRIPTS
from sandbox_platform.coordination.idempotency import IdempotencyStore
from sandbox_platform.coordination.lua import load_script
from tests.helpers import wait_until

WORKER_APP = "tests.worker_app"
OUTBOX = "sp:runs:{sandbox}:outbox"
FP = "f" * 32


def _sha(name: str) -> bytes:
    return hashlib.sha1(load_script(name).encode()).hexdigest().encode()  # noqa: S324


@contextmanager
def _monitor(redis_url: str) -> Iterator[list[bytes]]:
    """Every command the server runs while the block runs (``MONITOR``), as raw lines; the
    block's end is marked with an ``ECHO`` the reader stops at (no sleep, no lost tail)."""
    marker = f"monitor-end-{uuid.uuid4().hex}"
    client = redis.Redis.from_url(redis_url)
    connection = client.connection_pool.get_connection()
    connection.send_command("MONITOR")
    assert connection.read_response() in (b"OK", "OK")
    lines: list[bytes] = []

    def read() -> None:
        while True:
            line = connection.read_response()
            raw = line if isinstance(line, bytes) else str(line).encode()
            if marker.encode() in raw:
                return
            lines.append(raw)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield lines
    finally:
        client.echo(marker)
        reader.join(timeout=30)
        connection.disconnect()
    assert not reader.is_alive(), "MONITOR reader did not see the end marker"


@pytest.mark.slow
@pytest.mark.usefixtures("live_ready_limits")
@pytest.mark.parametrize(("pool", "rides"), [("solo", True), ("prefork", False)])
def test_the_result_rides_with_the_ack_on_solo_and_has_its_own_call_on_prefork(
    pool, rides, guarded, platform_app, worker_factory, redis_client, redis_url
) -> None:
    worker_factory(platform_app, WORKER_APP, pool=pool)
    jobs = 20
    keys = [f"tests.ttl_once:ride-{pool}-{n}" for n in range(jobs)]
    with _monitor(redis_url) as commands:
        for n in range(jobs):
            guarded.ttl_once.delay(f"ride-{pool}-{n}", f"ride-runs-{pool}")
        wait_until(lambda: redis_client.llen(f"ride-runs-{pool}") == jobs, timeout=60)
        wait_until(
            lambda: all(
                redis_client.hget(f"sp:idem:r:{{{key}}}", "state") == b"done" for key in keys
            ),
            timeout=30,
        )
    complete_calls = [line for line in commands if _sha("idem_complete") in line]
    if rides:
        assert complete_calls == []  # stored by the fetch/ack script that acknowledged each
    else:
        assert len(complete_calls) == jobs  # the child stores it; its parent acknowledges
    held = [raw for raw in redis_client.hvals("unacked") if b"tests.ttl_once" in raw]
    assert held == []  # every job acknowledged (a ping reply of this process may be there)
    for key in keys:
        assert redis_client.hget(f"sp:idem:r:{{{key}}}", "result") is not None


def _running_claim(redis_client: redis.Redis, key: str) -> tuple[str, int]:
    store = IdempotencyStore(redis_client, "sp")
    claim = store.claim(key, FP, lease_seconds=60, ttl_seconds=600)
    assert claim.status == "acquired" and claim.token is not None
    return store.keys(key).record, claim.token


def test_the_ack_script_stores_the_result_then_acknowledges(redis_client: redis.Redis) -> None:
    record, token = _running_claim(redis_client, "ride-ack")
    redis_client.hset("unacked", "tag-1", "[]")
    redis_client.zadd("unacked_index", {"tag-1": 1})
    reply = TRANSPORT_SCRIPTS.get(redis_client, "ack")(
        keys=["unacked", "unacked_index"],
        args=[1, record, str(token), '{"ok": 1}', "", "", "tag-1"],
    )
    assert reply == [1, 1]  # one tag acknowledged, its completion stored
    assert redis_client.hlen("unacked") == 0
    claim = IdempotencyStore(redis_client, "sp").claim("ride-ack", FP)
    assert (claim.status, claim.result) == ("done", '{"ok": 1}')


def test_a_stale_completion_is_refused_and_reported_and_the_ack_still_made(
    redis_client: redis.Redis,
) -> None:
    record, token = _running_claim(redis_client, "ride-stale")
    redis_client.hset("unacked", "tag-2", "[]")
    reply = TRANSPORT_SCRIPTS.get(redis_client, "ack")(
        keys=["unacked", "unacked_index"],
        args=[1, record, str(token + 1), '"late"', "", "", "tag-2"],
    )
    assert reply == [1, 0]  # acknowledged; the completion's token was stale
    assert redis_client.hget(record, "state") == b"running"  # the holder's claim untouched
    assert redis_client.hlen("unacked") == 0


def test_a_record_of_another_type_fails_its_completion_only(redis_client: redis.Redis) -> None:
    """A key that holds a string (an operator, a key clash) fails that completion: the others
    are stored, the acknowledgements made, the string left as it was."""
    record, token = _running_claim(redis_client, "ride-ok")
    broken = "sp:idem:r:{ride-broken}"
    redis_client.set(broken, "someone else's")
    redis_client.hset("unacked", mapping={"tag-5": "[]", "tag-6": "[]"})
    reply = TRANSPORT_SCRIPTS.get(redis_client, "ack")(
        keys=["unacked", "unacked_index"],
        args=[
            2,
            *(broken, "1", '"b"', OUTBOX, json.dumps({"state": "succeeded", "task_id": "b"})),
            *(record, str(token), '"ok"', OUTBOX, json.dumps({"state": "succeeded"})),
            *("tag-5", "tag-6"),
        ],
    )
    assert reply[0] == 2 and reply[2] == 1
    assert reply[1].startswith(b"broken: WRONGTYPE")
    assert redis_client.get(broken) == b"someone else's"
    assert redis_client.hget(record, "state") == b"done"
    assert redis_client.hlen("unacked") == 0
    failed, stored = (json.loads(row) for row in redis_client.lrange(OUTBOX, 0, -1))
    assert failed["state"] == "failed" and failed["task_id"] == "b"  # its run record says why
    assert broken in failed["error"] and "WRONGTYPE" in failed["error"]
    assert stored == {"state": "succeeded"}


def test_a_run_record_rides_without_a_completion(redis_client: redis.Redis) -> None:
    redis_client.hset("unacked", "tag-7", "[]")
    row = json.dumps({"state": "dead_lettered", "task_id": "r"})
    reply = TRANSPORT_SCRIPTS.get(redis_client, "ack")(
        keys=["unacked", "unacked_index"], args=[1, "", "", "", OUTBOX, row, "tag-7"]
    )
    assert reply == [1, 1]
    assert redis_client.lrange(OUTBOX, 0, -1) == [row.encode()]


def test_the_fetch_script_stores_riders_before_it_takes_and_reports_stale_ones(
    redis_client: redis.Redis,
) -> None:
    fresh, token = _running_claim(redis_client, "ride-fetch")
    stale, old = _running_claim(redis_client, "ride-fetch-stale")
    redis_client.hset("unacked", "tag-3", "[]")
    redis_client.lpush("q", '{"body": "", "headers": {}, "properties": {"delivery_tag": "t4"}}')
    sha = TRANSPORT_SCRIPTS.sha(redis_client, "fetch")
    reply = redis_client.evalsha(
        sha,
        3,
        "unacked",
        "unacked_index",
        "q",
        1,  # take one message
        "",  # admit nothing
        1,
        "tag-3",  # one acknowledgement
        2,
        *(fresh, str(token), '"r"', "", ""),
        *(stale, str(old + 5), '"s"', "", ""),  # two completions, the second stale
        "q.malformed",
    )
    assert reply[:3] == [2, 1, 0]  # two completions: stored, stale
    assert reply[3:6] == [
        1,
        1,
        b'{"body": "", "headers": {}, "properties": {"delivery_tag": "t4"}}',
    ]
    assert redis_client.hget(fresh, "state") == b"done"
    assert redis_client.hget(stale, "state") == b"running"
    assert redis_client.hkeys("unacked") == [b"t4"]  # tag-3 acknowledged, t4 recorded
