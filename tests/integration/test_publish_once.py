"""The enqueue-side dedupe folded into the publish (``broker/publish_once.py``), against a real
Redis: one round trip per idempotent ``delay``, the key and the message written together, a
duplicate answered with the first job's id and a conflict raised — with nothing pushed."""

from __future__ import annotations

import pytest

from sandbox_platform import create_app, load_settings
from sandbox_platform.app.enqueue import publishes_once
from sandbox_platform.core.errors import IdempotencyConflict
from tests.integration.test_bulk_enqueue import round_trips

QUEUE = "sandbox_platform.sandbox"
KEY = "sp:idem:r:{tests.effect_once:once-1}"  # its tid field names the first job


def test_an_idempotent_delay_is_one_round_trip_and_a_duplicate_pushes_nothing(
    guarded, platform_app, redis_client
) -> None:
    assert publishes_once(platform_app)
    guarded.effect_once.delay("warm-up", 0.0, "s")  # connections and scripts are warm now
    with round_trips() as sent:
        first = guarded.effect_once.delay("once-1", 0.0, "s")
    assert sent[0] == 1  # the key and the message in one script
    assert redis_client.llen(QUEUE) == 2
    assert redis_client.hget(KEY, "tid") == first.id.encode()

    again = guarded.effect_once.delay("once-1", 0.0, "s")
    assert again.id == first.id
    assert redis_client.llen(QUEUE) == 2  # nothing pushed

    with pytest.raises(IdempotencyConflict, match="used before with different arguments"):
        guarded.effect_once.delay("once-1", 1.0, "s")
    assert redis_client.llen(QUEUE) == 2
    assert redis_client.hget(KEY, "tid") == first.id.encode()


def test_the_header_does_not_reach_the_queue(guarded, redis_client) -> None:
    import json

    guarded.effect_once.delay("once-2", 0.0, "s")
    (raw,) = redis_client.lrange(QUEUE, 0, -1)
    assert "sp_publish_once" not in json.loads(raw)["headers"]


def test_the_same_job_published_again_is_pushed(guarded, redis_client) -> None:
    """A retry or a deferral publishes the same task id again: it must reach the queue (an
    earlier version of the folded publish answered it as a duplicate and dropped the retry)."""
    first = guarded.effect_once.delay("once-3", 0.0, "s")
    again = guarded.effect_once.apply_async(("once-3", 0.0, "s"), task_id=first.id)
    assert again.id == first.id
    assert redis_client.llen(QUEUE) == 2


def test_a_duplicate_is_answered_when_another_app_opened_the_pooled_connection(
    guarded, platform_app, platform_settings_kwargs, redis_client
) -> None:
    """kombu's connection pool is shared by apps of one broker URL: the channel that publishes
    for this app may have been opened for another. The answer travels with the message's
    header, so it still reaches this app's guard (regression: with the answers kept per app,
    the duplicate got a new id for a job that was never pushed)."""
    other = create_app(load_settings(**platform_settings_kwargs))
    try:
        with other.producer_or_acquire() as producer:  # the pool's connection: the other's
            producer.publish({}, routing_key="elsewhere")
        first = guarded.effect_once.delay("once-4", 0.0, "s")
        again = guarded.effect_once.delay("once-4", 0.0, "s")
        assert again.id == first.id
        assert redis_client.llen(QUEUE) == 1
    finally:
        other.close()
