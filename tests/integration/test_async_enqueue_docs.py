"""docs/async-enqueue.md's FastAPI example, run as written with a real server.

The page's Python block is the user's module (written to the file its first line names), its
shell block is run in that directory: ``sandbox-platform worker`` as written, ``uvicorn`` as
written on a free loopback port instead of 8000. httpx posts orders with ``X-Request-ID``: the
response echoes the id and names the job, the same order posted again names the same job, and
the worker runs each job once with the request's id as its correlation id. (The module is also
run on its own by tests/integration/test_docs_examples.py, as every Python block of the docs.)
"""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import JobRun
from tests.helpers import platform_env, stop_group, wait_until

pytestmark = pytest.mark.slow

PAGE = Path(__file__).resolve().parents[2] / "docs" / "async-enqueue.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
BIN = Path(sys.executable).parent


def _blocks(language: str) -> list[str]:
    return [m.group(2) for m in FENCE.finditer(PAGE.read_text()) if m.group(1) == language]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _runs(database_url: str) -> list[JobRun]:
    with session_scope(database_url) as session:
        runs = list(session.scalars(select(JobRun).where(JobRun.task_name == "shop_api.charge")))
        session.expunge_all()
    return runs


def test_the_page_has_the_blocks_this_test_runs() -> None:
    (module,) = [code for code in _blocks("python") if code.startswith("# shop_api.py\n")]
    assert "await charge.delay_async(" in module
    (commands,) = _blocks("bash")
    assert [line.split()[0] for line in commands.splitlines()] == ["sandbox-platform", "uvicorn"]


def test_the_fastapi_example_serves_orders(
    platform_settings_kwargs: dict[str, object], tmp_path: Path
) -> None:
    (module,) = [code for code in _blocks("python") if code.startswith("# shop_api.py\n")]
    worker_line, server_line = _blocks("bash")[0].splitlines()
    project = tmp_path / "shop"
    project.mkdir()
    (project / "shop_api.py").write_text(module)
    env = platform_env(**platform_settings_kwargs)
    env.pop("PYTHONPATH", None)

    port = _free_port()
    server_argv = shlex.split(server_line)
    server_argv[server_argv.index("--port") + 1] = str(port)
    worker_argv = shlex.split(worker_line.removesuffix("&"))
    started: list[subprocess.Popen[bytes]] = []
    try:
        for name, argv in (("worker", worker_argv), ("server", server_argv)):
            with (tmp_path / f"{name}.log").open("wb") as log:
                started.append(
                    subprocess.Popen(
                        [str(BIN / argv[0]), *argv[1:]],
                        cwd=project,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        base = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            assert started[1].poll() is None, (tmp_path / "server.log").read_text()
            try:
                return httpx.get(f"{base}/openapi.json", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answers, timeout=30, message="uvicorn does not answer")

        def post(order_id: str, request_id: str) -> str:
            response = httpx.post(
                f"{base}/orders",
                json={"order_id": order_id, "cents": 4200},
                headers={"X-Request-ID": request_id},
                timeout=10,
            )
            assert response.status_code == 200, response.text
            assert response.headers["X-Request-ID"] == request_id
            return str(response.json()["job_id"])

        first = post("order-1", "req-1")
        second = post("order-2", "req-2")
        assert post("order-1", "req-1-again") == first  # the idempotency key: the same job
        assert first != second

        database = str(platform_settings_kwargs["database_url"])
        runs = wait_until(
            lambda: (found := _runs(database)) and len(found) >= 2 and found,
            timeout=60,
            message=f"the worker did not run both jobs (log: {tmp_path / 'worker.log'})",
        )
        assert sorted(run.task_id for run in runs) == sorted([first, second])  # each once
        assert {run.task_id: (run.correlation_id, run.state) for run in runs} == {
            first: ("req-1", "succeeded"),
            second: ("req-2", "succeeded"),
        }
    finally:
        for proc in started:
            stop_group(proc, timeout=30)
