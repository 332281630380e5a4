"""The built wheel as a user installs it (issue 22): what it holds, and what a core install
(no extras) in a fresh virtual environment does: none of the extras' packages is there, a real
worker runs a guarded job, a command that needs an extra says which one, and
``sandbox-platform --version`` is the package metadata's.

The wheel's contents are checked in the normal suite too (building it takes a few seconds);
the rest runs only when ``SP_WHEEL_PYTHON`` names the python of a virtual environment the
built wheel is installed in, core only: ``.ci/wheel-job`` builds the wheel, makes that
environment and runs this module against it (README, "Tests"). Everything the installation
runs, runs from a temporary directory with no PYTHONPATH, so the checkout is not on its path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import platform_env, wait_until
from tests.releases import ROOT, WHEEL_PYTHON, current_install, needs_wheel

#: packages of the extras ([dashboard], [flower]) a core install must not have
EXTRAS_PACKAGES = ("starlette", "uvicorn", "flower", "jinja2", "prometheus_client")

USER_APP = """
from sandbox_platform import create_app
from sandbox_platform.guards import irreversible
from sandbox_platform.tasks import guarded_task

app = create_app()


@irreversible("payment", simulate=lambda order_id, cents: {"charge_id": f"sim-{order_id}"})
def provider_charge(order_id: str, cents: int) -> dict[str, str]:
    raise RuntimeError("a live payment call in a sandbox test")


@guarded_task(app, idempotency_key="{order_id}")
def charge(order_id: str, cents: int) -> dict[str, str]:
    return provider_charge(order_id, cents)
"""

ENQUEUE = """
import json
from sandbox_platform import bind_correlation_id
from wheel_shop import charge

with bind_correlation_id("wheel-job-1"):
    first = charge.delay("order-7", 700)
    again = charge.delay("order-7", 700)
print(json.dumps({"id": first.id, "again": again.id, "result": first.get(timeout=90)}))
"""


def _built_wheel(tmp_path: Path) -> Path:
    """The wheel ``.ci/wheel-job`` built (``SP_WHEEL_DIST``), else one built here."""
    dist = os.environ.get("SP_WHEEL_DIST")
    if not dist:
        dist = str(tmp_path / "dist")
        built = subprocess.run(
            [sys.executable, "-m", "build", "--wheel", "--outdir", dist, str(ROOT)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    wheels = sorted(Path(dist).glob("sandbox_platform-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.mark.slow
def test_the_wheel_holds_only_sandbox_platform_and_its_dist_info(tmp_path: Path) -> None:
    wheel = _built_wheel(tmp_path)
    version = wheel.name.split("-")[1]
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"sandbox_platform", f"sandbox_platform-{version}.dist-info"}, sorted(tops)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    # the files the package reads at run time are in it
    assert "sandbox_platform/py.typed" in names
    for folder, suffix in (
        ("sandbox_platform/coordination/lua/", ".lua"),
        ("sandbox_platform/db/migrations/versions/", ".py"),
        ("sandbox_platform/dashboard/templates/", ".html"),
    ):
        assert any(n.startswith(folder) and n.endswith(suffix) for n in names), folder


# -- a core install in a fresh virtual environment --------------------------------------------


def _bin(name: str) -> str:
    assert WHEEL_PYTHON is not None
    return str(Path(WHEEL_PYTHON).parent / name)


def _env(**settings: object) -> dict[str, str]:
    """The installation's environment: platform settings, nothing that points at the
    checkout or at another virtual environment."""
    env = platform_env(**settings)
    for name in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(name, None)
    env["PATH"] = os.pathsep.join([_bin(""), os.environ.get("PATH", "")])
    return env


def _run(
    argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _ok(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = _run(argv, cwd, env)
    assert done.returncode == 0, (argv, done.stdout[-2000:], done.stderr[-2000:])
    return done.stdout


@needs_wheel
def test_a_core_install_has_none_of_the_extras_packages(tmp_path: Path) -> None:
    probe = (
        "import importlib.util, json, sandbox_platform, sandbox_platform.tasks\n"
        f"found = {{m: importlib.util.find_spec(m) is not None for m in {EXTRAS_PACKAGES!r}}}\n"
        "print(json.dumps({'file': sandbox_platform.__file__, 'found': found}))\n"
    )
    shown = json.loads(_ok([_bin("python"), "-c", probe], tmp_path, _env()))
    assert shown["file"].startswith(str(current_install())), shown  # the wheel, not the checkout
    assert shown["found"] == dict.fromkeys(EXTRAS_PACKAGES, False), shown


@needs_wheel
@pytest.mark.slow
def test_a_core_install_runs_a_guarded_job_on_a_real_worker(redis_url: str, tmp_path: Path) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    (project / "wheel_shop.py").write_text(USER_APP)
    env = _env(
        redis_url=redis_url,
        result_backend="redis",
        database_url=f"sqlite:///{tmp_path / 'sandbox.sqlite3'}",
        data_dir=tmp_path / "data",
        app="wheel_shop",
    )
    cli = _bin("sandbox-platform")
    _ok([cli, "db", "upgrade"], project, env)
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [cli, "worker", "--processes", "1"],
            cwd=project,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        enqueued = json.loads(_ok([_bin("python"), "-c", ENQUEUE], project, env))
        assert enqueued["again"] == enqueued["id"], enqueued  # the key held at enqueue
        assert enqueued["result"] == {"charge_id": "sim-order-7"}, enqueued  # simulated

        def run_recorded() -> bool:
            shown = _run([cli, "jobs", "show", enqueued["id"], "--json"], project, env)
            if shown.returncode != 0:
                return False
            runs = [e for e in json.loads(shown.stdout)["entries"] if e["kind"] == "run"]
            return [(r["task_id"], r["state"]) for r in runs] == [(enqueued["id"], "succeeded")]

        wait_until(run_recorded, timeout=60, interval=0.5, message="no run record")

        def intercepted() -> list[dict[str, object]]:
            events = json.loads(_ok([cli, "dry-runs", "list", "--json"], project, env))
            return [e for e in events if e["task_id"] == enqueued["id"]]

        events = wait_until(intercepted, timeout=30, interval=0.5, message="no dry-run event")
        assert [e["action"] for e in events] == ["payment"], events
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)  # a warm shutdown of every consumer
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(10)
    log_text = (tmp_path / "worker.log").read_text(errors="replace")
    assert worker.returncode == 0, log_text[-3000:]
    assert "Traceback" not in log_text, log_text[-3000:]


@needs_wheel
def test_dashboard_on_a_core_install_names_its_extra(redis_url: str, tmp_path: Path) -> None:
    env = _env(redis_url=redis_url, database_url=f"sqlite:///{tmp_path / 's.sqlite3'}")
    done = _run([_bin("sandbox-platform"), "dashboard"], tmp_path, env, timeout=60)
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 2, lines
    assert len(lines) == 1 and "[dashboard]" in lines[0], lines


@needs_wheel
def test_version_is_the_package_metadata_version(tmp_path: Path) -> None:
    probe = (
        "import importlib.metadata, sandbox_platform\n"
        "print(importlib.metadata.version('sandbox-platform'), sandbox_platform.__version__)\n"
    )
    metadata, attribute = _ok([_bin("python"), "-c", probe], tmp_path, _env()).split()
    assert attribute == metadata
    done = _run([_bin("sandbox-platform"), "--version"], tmp_path, _env(), timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert metadata in done.stdout.split(), done.stdout
