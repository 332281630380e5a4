"""A drain round while the coordination Redis cannot be reached is skipped quietly: the rows
wait in Redis. A Redis Cluster client with no reachable node raises
``RedisClusterException`` (redis-py 8.2 its subclass ``RedisClusterUnreachableError``), which is
not a ``RedisError``: it escaped the drain at a worker's exit as a traceback (the cluster tests
stop their cluster before the process ends)."""

from __future__ import annotations

from typing import Any, cast

import pytest
import redis
from redis.exceptions import ConnectionError, RedisClusterException

from sandbox_platform.db.outbox import RunOutbox

#: what a cluster client with no reachable node raises: the subclass since redis-py 8.2, the
#: base class before it (the lowest-versions job runs the lowest redis-py pyproject allows)
CLUSTER_UNREACHABLE: type[Exception] = getattr(
    redis.exceptions, "RedisClusterUnreachableError", RedisClusterException
)


class _Unreachable:
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> None:
            self.calls += 1
            raise self.error

        return fail


@pytest.mark.parametrize(
    "error",
    [CLUSTER_UNREACHABLE("no node reachable"), ConnectionError("refused")],
    ids=["cluster", "single"],
)
def test_a_drain_round_without_redis_writes_nothing_and_raises_nothing(error: Exception) -> None:
    client = _Unreachable(error)
    written: list[Any] = []
    outbox = RunOutbox(cast(redis.Redis, client), "sp", "sandbox", written.extend)
    assert outbox.drain() == 0
    assert client.calls >= 1 and written == []
