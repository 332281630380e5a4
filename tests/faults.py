"""Fault injection for the reliability suite: a private redis-server that can be killed and
started again (with or without persistence), and a TCP proxy in front of PostgreSQL that can
drop every connection and refuse new ones for a while. Every process is stopped by its pid."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from pathlib import Path

import redis

from tests.helpers import wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server of one test on its own port; ``restart`` keeps the port (and the data
    when ``appendonly``)."""

    def __init__(self, directory: Path, *, appendonly: bool) -> None:
        self.directory = directory
        self.appendonly = appendonly
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--appendfsync",
                "always",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until(answers, timeout=15, message=f"redis-server on {self.port} did not start")
        client.close()
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target``; ``outage()`` drops every connection and
    refuses new ones until ``restore()``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = int(self.listener.getsockname()[1])
        self.down = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def outage(self) -> None:
        self.down.set()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def restore(self) -> None:
        self.down.clear()

    def close(self) -> None:
        self._closed.set()
        self.outage()
        self.listener.close()


def proxied(database_url: str, proxy: TcpProxy) -> str:
    """``database_url`` through ``proxy`` (host and port replaced)."""
    import sqlalchemy as sa

    url = sa.make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    return str(url.render_as_string(hide_password=False))


def elapsed_since(start: float) -> float:
    return time.monotonic() - start


def kombu_envelope(
    body: object = None,
    *,
    task: str | None = "faults.record",
    raw_body: bytes | None = None,
    queue: str = "sandbox_platform.sandbox",
    mode: str = "sandbox",
) -> str:
    """A message as kombu's Redis transport stores it in a queue's list, with any body."""
    import base64
    import json
    import uuid

    data = raw_body if raw_body is not None else json.dumps(body).encode()
    task_id = str(uuid.uuid4())
    headers = (
        {}
        if task is None
        else {
            "lang": "py",
            "task": task,
            "id": task_id,
            "root_id": task_id,
            "parent_id": None,
            "group": None,
            "sp_mode": mode,
            "argsrepr": "",
            "kwargsrepr": "",
        }
    )
    return json.dumps(
        {
            "body": base64.b64encode(data).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": {
                "correlation_id": task_id,
                "reply_to": "",
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )
