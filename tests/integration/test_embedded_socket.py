"""A data dir too deep for a Unix socket path still gets a working embedded Redis (the kernel
cuts a socket path at 108 bytes: the server would listen on a truncated name nobody finds)."""

from __future__ import annotations

import os
from pathlib import Path

import redis

from sandbox_platform.core.embedded import (
    embedded_redis_running,
    ensure_embedded_redis,
    socket_path_for,
    stop_embedded_redis,
)


def test_a_deep_data_dir_gets_a_short_private_socket(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "sandbox-platform"
    assert len(os.fsencode(deep / "redis.sock")) > 108

    url = ensure_embedded_redis(deep)
    try:
        socket = socket_path_for(deep)
        assert url == f"unix://{socket}"
        assert len(os.fsencode(socket)) <= 100
        assert socket.parent.stat().st_mode & 0o077 == 0  # a private directory
        assert socket_path_for(deep) == socket  # every process finds the same one
        assert embedded_redis_running(deep)
        assert redis.Redis(unix_socket_path=str(socket)).ping()
    finally:
        stop_embedded_redis(deep)
    assert not embedded_redis_running(deep)


def test_a_short_data_dir_keeps_its_socket_inside(tmp_path: Path) -> None:
    assert socket_path_for(tmp_path) == tmp_path / "redis.sock"
