"""README's "Your own app" guide, run as written.

Its first Python block is the user's module (written to the file its first line names), its
shell blocks are run line by line in that directory (``export``s set the environment, a
trailing ``&`` starts a process that runs until the end of the test, every other command must
succeed — readiness is asked again until GO), the other Python block runs as the user's
application. Only the Redis and database come from the test (the guide's "nothing else
configured" would start an embedded Redis); the database is a new PostgreSQL database, so
the guide's ``db upgrade`` is what creates its tables. The commands and the application
run from this checkout's installation, or from the built wheel's virtual environment when
``SP_WHEEL_PYTHON`` names its python (``.ci/wheel-job`` installs it with ``[postgres]``).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import create_pg_database, drop_pg_database
from tests.helpers import platform_env, stop_group, wait_until
from tests.releases import current_python

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"
PYTHON = current_python()
CLI = Path(PYTHON).parent / "sandbox-platform"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def guide_blocks() -> list[tuple[str, str]]:
    """(language, code) of every fenced block of the README section "Your own app"."""
    text = README.read_text()
    start = text.index("## Your own app\n")
    end = text.index("\n## ", start + 1)
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text[start:end])]


def shell_lines(code: str) -> list[str]:
    lines = []
    for raw in code.splitlines():
        line = raw.split("  #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def test_the_guide_has_the_blocks_this_test_runs() -> None:
    kinds = [kind for kind, _ in guide_blocks()]
    assert kinds == ["python", "bash", "python", "bash"]


@pytest.fixture
def new_pg_database() -> Iterator[str]:
    """A new, empty PostgreSQL database: the guide's `db upgrade` creates its tables."""
    url = create_pg_database("sp_guide")
    try:
        yield url
    finally:
        drop_pg_database(url)


def test_readme_guide_runs_as_written(
    platform_settings_kwargs: dict[str, object], new_pg_database: str, tmp_path: Path
) -> None:
    platform_settings_kwargs = {**platform_settings_kwargs, "database_url": new_pg_database}
    (_, module), (_, start), (_, enqueue), (_, inspect) = guide_blocks()
    project = tmp_path / "shop"
    project.mkdir()
    filename = module.splitlines()[0].removeprefix("# ").strip()
    (project / filename).write_text(module)
    env = platform_env(**platform_settings_kwargs, heartbeat_interval=1)
    env.pop("PYTHONPATH", None)
    started: list[subprocess.Popen[bytes]] = []
    logs = tmp_path / "logs"
    logs.mkdir()

    def run(line: str) -> subprocess.CompletedProcess[str]:
        argv = shlex.split(line)
        assert argv[0] == "sandbox-platform", line
        return subprocess.run(
            [str(CLI), *argv[1:]], cwd=project, env=env, capture_output=True, text=True, timeout=120
        )

    try:
        for line in shell_lines(start):
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").partition("=")
                env[name] = value
            elif line.endswith("&"):
                argv = shlex.split(line.removesuffix("&"))
                with (logs / f"{argv[1]}.log").open("wb") as out:
                    started.append(
                        subprocess.Popen(
                            [str(CLI), *argv[1:]],
                            cwd=project,
                            env=env,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
            else:
                wait_until(
                    lambda line=line: run(line).returncode == 0,
                    timeout=90,
                    interval=1.0,
                    message=f"{line!r} did not succeed",
                )
        app = subprocess.run(
            [PYTHON, "-c", enqueue], cwd=project, env=env, capture_output=True, text=True
        )
        assert app.returncode == 0, app.stderr
        jobs, dry_runs = shell_lines(inspect)

        def charged() -> bool:
            shown = run(jobs)
            return shown.returncode == 0 and "succeeded" in shown.stdout

        wait_until(charged, timeout=60, interval=0.5, message="the job did not run")

        def intercepted() -> subprocess.CompletedProcess[str] | None:
            shown = run(dry_runs)
            assert shown.returncode == 0, shown.stderr
            return shown if "order-42" in shown.stdout else None

        # the run record comes through the outbox, the dry-run event through the worker's
        # buffer: the event may reach the database a moment after the run
        listed = wait_until(intercepted, timeout=30, interval=0.5, message="no dry-run event")
        assert "order-42" in listed.stdout and "payment" in listed.stdout
    finally:
        for proc in started:
            stop_group(proc)
