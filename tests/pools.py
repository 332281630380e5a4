"""The pools the worker integration tests run on: solo (one job per process) and threads
(8 jobs in flight per process, as ``sandbox-platform worker`` runs by default).

A module marked ``@ON_BOTH_POOLS`` (as ``pytestmark``) runs each of its tests that starts a
worker once per pool (the ``worker_pool`` fixture, tests/conftest.py). Combined with
``ON_BOTH_BROKERS``, the threads pool runs on RabbitMQ only for tests also marked
``@THREADS_ON_RABBITMQ`` (a smoke test; the guards themselves do not depend on the broker);
a test marked ``@SOLO_ONLY`` runs on solo alone (what it checks does not depend on the pool).

A threads run proves that jobs really interleaved: every job entering a test worker bumps a
counter in Redis and keeps its high-water mark (tests/inflight.py), and the module fails when
its threads runs never had ``IN_FLIGHT_FLOOR`` jobs in flight at once.
"""

from __future__ import annotations

from types import MappingProxyType

import pytest

__all__ = ["IN_FLIGHT_FLOOR", "ON_BOTH_POOLS", "POOLS", "SOLO_ONLY", "THREADS_ON_RABBITMQ"]

#: pool -> jobs in flight per worker process in the tests
POOLS = MappingProxyType({"solo": 1, "threads": 8})
ON_BOTH_POOLS = pytest.mark.both_pools
THREADS_ON_RABBITMQ = pytest.mark.threads_on_rabbitmq
SOLO_ONLY = pytest.mark.solo_only
IN_FLIGHT_FLOOR = 4
