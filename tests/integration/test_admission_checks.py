"""Declarative admission checks (coordination/checks.py): a guard adds a condition on one
Redis key to the job's one admission round trip, without Lua of its own. On a real Redis: a
failed check takes nothing (no claim, no governor token) and names itself; a record already
done answers first; a key of the wrong type fails that admission as a bad record. Through a
real worker: a guard from outside the package (tests/kill_switch_guard.py) holds a task's
jobs while its switch is set, and they run once it is cleared."""

from __future__ import annotations

import pytest
import redis
from sqlalchemy import select

from sandbox_platform import create_app, load_settings
from sandbox_platform.coordination.admission import Admitter
from sandbox_platform.coordination.checks import AdmissionCheck, first_refusal
from sandbox_platform.coordination.governor import Governor
from sandbox_platform.coordination.idempotency import IdempotencyStore
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import JobRun
from tests.helpers import wait_until
from tests.kill_switch_guard import SWITCH, KillSwitch

ABSENT = AdmissionCheck("switch", "t:switch", "absent")
BELOW = AdmissionCheck("incidents", "t:incidents", "below", bound=2)


def test_a_failed_check_takes_nothing_and_names_itself(redis_client: redis.Redis) -> None:
    admitter = Admitter(redis_client, "t")
    Governor(redis_client, "t").set_limit("api", 1, 60.0)
    redis_client.set("t:switch", "on")
    refused = admitter.admit("k1", "fp", [("api", 1)], checks=[ABSENT, BELOW])
    assert refused.status == "refused" and refused.refused_by("switch")
    assert refused.token is None
    assert IdempotencyStore(redis_client, "t").keys("k1").record.encode() not in set(
        redis_client.keys("t:*")
    )  # no claim
    redis_client.delete("t:switch")
    redis_client.set("t:incidents", 2)
    assert admitter.admit("k1", "fp", [("api", 1)], checks=[ABSENT, BELOW]).refused_by("incidents")
    redis_client.set("t:incidents", 1)
    admitted = admitter.admit("k1", "fp", [("api", 1)], checks=[ABSENT, BELOW])
    assert admitted.status == "acquired"  # the one token was still there: nothing was taken
    assert admitter.admit("k2", "fp", [("api", 1)]).status == "denied"


def test_a_done_record_answers_before_the_checks(redis_client: redis.Redis) -> None:
    admitter = Admitter(redis_client, "t")
    first = admitter.admit("k3", "fp", [])
    assert first.token is not None
    IdempotencyStore(redis_client, "t").complete("k3", first.token, '"paid"')
    redis_client.set("t:switch", "on")
    again = admitter.admit("k3", "fp", [], checks=[ABSENT])
    assert again.status == "done" and again.value() == "paid"


def test_a_key_of_another_type_fails_the_admission(redis_client: redis.Redis) -> None:
    redis_client.rpush("t:incidents", "x")
    with pytest.raises(redis.ResponseError):
        Admitter(redis_client, "t").admit(None, "", [], checks=[BELOW])
    redis_client.delete("t:incidents")
    redis_client.set("t:incidents", "many")
    with pytest.raises(redis.ResponseError, match="does not hold an integer"):
        Admitter(redis_client, "t").admit(None, "", [], checks=[BELOW])


def test_the_step_by_step_checks_agree(redis_client: redis.Redis) -> None:
    """What a cluster client asks one key at a time (first_refusal) decides as the script."""
    assert first_refusal(redis_client, [ABSENT, BELOW]) is None
    redis_client.set("t:incidents", 5)
    assert first_refusal(redis_client, [ABSENT, BELOW]) == BELOW
    redis_client.set("t:switch", "")
    assert first_refusal(redis_client, [ABSENT, BELOW]) == ABSENT


def test_a_check_is_validated_when_made() -> None:
    with pytest.raises(ValueError, match="unknown admission check"):
        AdmissionCheck("x", "k", "present")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bound must be an integer"):
        AdmissionCheck("x", "k", "below", bound=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retry_in"):
        AdmissionCheck("x", "k", "absent", retry_in=0)


@pytest.mark.slow
def test_a_guard_holds_jobs_with_a_declarative_check_through_a_real_worker(
    worker_factory, platform_settings_kwargs, redis_client, sqlite_url
) -> None:
    app = create_app(load_settings(**platform_settings_kwargs), guards=[KillSwitch()])
    try:
        Governor(redis_client, "sp").set_limit("switch-api", 100, 1.0)
        redis_client.set(f"sp:{SWITCH}:switch.pay", "1")
        worker_factory(app, "tests.kill_switch_app")
        for n in range(3):
            app.send_task("switch.pay", args=[n])

        def deferred() -> int:
            with session_scope(sqlite_url) as session:
                rows = session.scalars(select(JobRun.state).where(JobRun.task_name == "switch.pay"))
                return sum(state == "deferred" for state in rows)

        wait_until(lambda: deferred() >= 6, timeout=60, message="the switch held no job")
        assert redis_client.llen("switch:paid") == 0
        assert not redis_client.keys("sp:idem:r:*")  # refused jobs claimed nothing

        redis_client.delete(f"sp:{SWITCH}:switch.pay")
        wait_until(lambda: redis_client.llen("switch:paid") == 3, timeout=60)
        assert sorted(int(n) for n in redis_client.lrange("switch:paid", 0, -1)) == [0, 1, 2]
    finally:
        app.close()
