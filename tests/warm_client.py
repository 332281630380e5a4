"""An HTTP/1.1 keep-alive client that ``tests.shapes_app`` warms at import (before any job,
before the egress guard) when ``SP_TEST_WARM_URL`` is set: a job that uses it must reach
nothing (tests/integration/test_egress.py)."""

from __future__ import annotations

import os

import httpx

__all__ = ["WARM_URL", "client", "warm_from_env"]

WARM_URL = "SP_TEST_WARM_URL"
client = httpx.Client(timeout=10)


def warm_from_env() -> None:
    url = os.environ.get(WARM_URL)
    if url:
        client.get(url).raise_for_status()
