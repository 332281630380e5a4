"""HTTP requests with ``X-Request-ID`` to an ASGI app (Starlette on uvicorn) and a WSGI app
(wsgiref), each behind the platform's middleware, each enqueueing a guarded task: a real
worker's JSON log lines for that task and its child carry the request's id, and the response
returns it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import json_lines, platform_env, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def web_server(
    tmp_path: Path, platform_settings_kwargs: dict[str, object]
) -> Iterator[Callable[[str], str]]:
    """Start ``tests/request_id_web.py`` (asgi or wsgi); return its base URL. Each server is
    stopped by its pid afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def start(kind: str) -> str:
        port_file = tmp_path / f"{kind}.port"
        log_path = tmp_path / f"{kind}-web.log"
        log = log_path.open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.request_id_web", kind, str(port_file)],
            cwd=ROOT,
            env=platform_env(**platform_settings_kwargs),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        started.append(proc)
        port = wait_until(
            lambda: proc.poll() is None and port_file.exists() and port_file.read_text(),
            timeout=30,
            message=f"the {kind} server did not start (log: {log_path})",
        )
        base = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                httpx.get(f"{base}/", timeout=1)
            except httpx.TransportError:
                return False
            return True

        wait_until(answers, timeout=30, message=f"the {kind} server does not answer")
        return base

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _task_lines(worker, task_name: str, correlation_id: str) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    return [
        r
        for r in json_lines(worker.log_text())
        if r.get("task_name") == task_name
        and r.get("logger") == "sandbox_platform.examples.shop.tasks"
        and r.get("correlation_id") == correlation_id
    ]


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_request_id_reaches_the_task_and_its_child(
    kind: str, platform_app, worker_factory, web_server
) -> None:
    worker = worker_factory(platform_app)
    base = web_server(kind)
    request_id = "abc"
    order = f"order-{kind}-{uuid.uuid4().hex[:8]}"

    response = httpx.get(f"{base}/charge/{order}", headers={"X-Request-ID": request_id})
    assert response.status_code == 200, response.text
    assert response.headers["X-Request-ID"] == request_id
    task_id = response.json()["task_id"]

    parent = wait_until(
        lambda: _task_lines(worker, "workers.charge_card", request_id),
        timeout=30,
        message=f"no log line of the task with correlation_id {request_id!r}",
    )
    child = wait_until(
        lambda: _task_lines(worker, "workers.send_receipt", request_id),
        timeout=30,
        message=f"no log line of the child task with correlation_id {request_id!r}",
    )
    assert parent[0]["task_id"] == task_id
    assert parent[0]["order_id"] == order
    assert child[0]["task_id"] != task_id


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_an_unsafe_request_id_is_replaced_over_http(kind: str, web_server) -> None:
    base = web_server(kind)
    bad = "abc def" + "x" * 200
    response = httpx.get(f"{base}/nowhere", headers={"X-Request-ID": bad})
    returned = response.headers["X-Request-ID"]
    assert returned != bad and len(returned) == 32
    assert int(returned, 16) >= 0  # hex
    traced = httpx.get(
        f"{base}/nowhere",
        headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
    )
    assert traced.headers["X-Request-ID"] == "4bf92f3577b34da6a3ce929d0e0e4736"
