"""The brokers the worker/guard integration tests run on: the test Redis (the default) and a
real RabbitMQ in a virtual host of this test session.

A test runs on both with ``@ON_BOTH_BROKERS`` (an indirect parametrization of the ``broker``
fixture, see tests/conftest.py); without it, ``broker`` is Redis and nothing changes.

Environment knob (optional):
  SP_TEST_AMQP_URL   the RabbitMQ server (default amqp://guest:guest@127.0.0.1:5672). With no
                     virtual host in it, the session creates ``sp_test_<pid>`` with rabbitmqctl
                     (and deletes it at the end); where rabbitmqctl cannot, it uses ``/`` and
                     relies on deleting its queues.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import pytest
import redis

from sandbox_platform.ops.amqp_queues import AmqpQueues

__all__ = ["AMQP_SERVER", "BROKERS", "ON_BOTH_BROKERS", "TestBroker", "amqp_vhost"]

AMQP_SERVER = os.environ.get("SP_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")
BROKERS = ("redis", "rabbitmq")
#: run the decorated test (or module, as ``pytestmark``) once on Redis, once on RabbitMQ
ON_BOTH_BROKERS = pytest.mark.parametrize("broker", BROKERS, indirect=True)
#: every queue the test apps use: the default queue, qualified with each mode, and the 0.1 name
TEST_QUEUES = ("sandbox_platform.sandbox", "sandbox_platform.live", "sandbox_platform")


def _rabbitmqctl(*args: str) -> bool:
    if shutil.which("rabbitmqctl") is None:
        return False
    try:
        done = subprocess.run(
            ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


class AmqpVhost:
    """This session's virtual host: created on first use, deleted at the end."""

    def __init__(self) -> None:
        self.url: str | None = None
        self.created: str | None = None

    def get(self) -> str:
        if self.url is None:
            self.url = self._make()
        return self.url

    def _make(self) -> str:
        parts = urlsplit(AMQP_SERVER)
        if parts.path.strip("/"):
            return AMQP_SERVER  # a virtual host was given: use it as it is
        name = f"sp_test_{os.getpid()}"
        user = parts.username or "guest"
        if _rabbitmqctl("add_vhost", name) and _rabbitmqctl(
            "set_permissions", "-p", name, user, ".*", ".*", ".*"
        ):
            self.created = name
            return f"{AMQP_SERVER.rstrip('/')}/{quote(name, safe='')}"
        return f"{AMQP_SERVER.rstrip('/')}//"

    def close(self) -> None:
        if self.created is not None:
            _rabbitmqctl("delete_vhost", self.created)
            self.created = None


amqp_vhost = AmqpVhost()


@dataclass
class TestBroker:
    """The broker of one test: its settings, its queue lengths, its clean-up."""

    __test__ = False  # not a test class

    kind: str
    redis_url: str
    amqp_url: str | None = None

    @property
    def url(self) -> str:
        """The Celery broker URL (the coordination Redis on Redis)."""
        return self.amqp_url or self.redis_url

    def settings(self) -> dict[str, object]:
        """What to add to the platform settings: a broker URL on RabbitMQ, nothing on Redis."""
        return {"broker_url": self.amqp_url} if self.amqp_url else {}

    def queue_length(self, queue: str) -> int:
        """Jobs ready in ``queue`` (LLEN on Redis, a passive declare on RabbitMQ)."""
        if self.amqp_url:
            return AmqpQueues(self.amqp_url).length(queue)
        client = redis.Redis.from_url(self.redis_url)
        try:
            return int(client.llen(queue))
        finally:
            client.close()

    def delete_queues(self, queues: tuple[str, ...] = TEST_QUEUES) -> None:
        """Delete the test apps' queues on RabbitMQ (Redis is flushed by its fixture).

        kombu keeps connections in a process-wide pool keyed by URL, and each remembers what
        it declared: an app of the next test would then skip declaring a queue deleted here,
        and its messages would go nowhere. The pools are reset with the queues."""
        if not self.amqp_url:
            return
        from kombu import Connection, pools

        with Connection(self.amqp_url, connect_timeout=10) as conn:
            channel = conn.channel()
            for queue in queues:
                channel.queue_delete(queue=queue)  # deleting a missing queue is fine
            channel.close()
        pools.reset()

    def check_reachable(self) -> None:
        if not self.amqp_url:
            return
        from kombu import Connection

        try:
            with Connection(self.amqp_url, connect_timeout=10) as conn:
                conn.ensure_connection(max_retries=1)
        except Exception as exc:  # pragma: no cover - environment problem
            where = f"{urlsplit(self.amqp_url).hostname}:{urlsplit(self.amqp_url).port or 5672}"
            pytest.fail(f"the test RabbitMQ at {where} is not reachable: {exc}")
