"""A retry or a deferral whose publish fails must not drop the job (pure unit test; the
real broker outage is in tests/reliability/test_redis_restarts.py).

Celery's ``Task.retry`` answers a failed publish with ``Reject(requeue=False)``: the message
would be acknowledged and the job lost. The platform turns it into ``Reject(requeue=True)``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from celery.exceptions import Reject, Retry

from sandbox_platform.guards.base import Job
from sandbox_platform.guards.republish import publish_again, retry_or_requeue


class FakeTask:
    name = "t.fake"
    sp_options: dict[str, Any] = {}
    sp_argnames: tuple[str, ...] = ()
    request = SimpleNamespace(id="task-1", retries=0, delivery_info={})

    def __init__(self, *, publish_fails: bool) -> None:
        self.publish_fails = publish_fails
        self.requeued: list[float] = []

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return None

    def requeue(self, args: Any, kwargs: Any, *, countdown: float, headers: Any) -> None:
        if self.publish_fails:
            raise ConnectionError("broker restarting")
        self.requeued.append(countdown)

    def retry(self, **kwargs: Any) -> Any:
        if self.publish_fails:  # what celery.app.task.Task.retry does when apply_async fails
            raise Reject(ConnectionError("broker restarting"), requeue=False)
        return Retry("retry", when=kwargs.get("countdown"))


def _job(task: FakeTask) -> Job:
    return Job(task=task, args=(), kwargs={}, services=SimpleNamespace())  # type: ignore[arg-type]


def test_a_failed_retry_publish_requeues_the_delivery() -> None:
    with pytest.raises(Reject) as caught:
        retry_or_requeue(_job(FakeTask(publish_fails=True)), RuntimeError("boom"), 1.0, 3)
    assert caught.value.requeue is True  # type: ignore[attr-defined]
    assert isinstance(caught.value.reason, ConnectionError)  # type: ignore[attr-defined]


def test_a_retry_that_publishes_raises_celerys_retry() -> None:
    with pytest.raises(Retry):
        retry_or_requeue(_job(FakeTask(publish_fails=False)), RuntimeError("boom"), 1.0, 3)


def test_a_failed_deferral_publish_requeues_the_delivery() -> None:
    with pytest.raises(Reject) as caught:
        publish_again(_job(FakeTask(publish_fails=True)), countdown=2, headers={}, what="defer")
    assert caught.value.requeue is True  # type: ignore[attr-defined]
    task = FakeTask(publish_fails=False)
    publish_again(_job(task), countdown=2, headers={}, what="defer")
    assert task.requeued == [2]
