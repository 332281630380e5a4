"""A user's own app, outside the package, run with the platform's commands (``--app``).

The app is written the way the README's first guide writes it, into a directory of its own;
every command runs with that directory as its working directory and nothing on PYTHONPATH,
as a user runs them from their project. Worker, beat, readiness and dead-letter replay load
the user's tasks; an app that cannot be imported is one line and exit 2.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from tests.helpers import json_lines, platform_env, stop_group, wait_until

pytestmark = pytest.mark.slow

#: a lease holder id where a beat line names one (banner, leader, release)
HOLDER = re.compile(
    r"holder ([^\s)]+)\)|^beat (\S+) (?:is now the leader|released the lease|lost the lease)"
)

#: the console script, as a user runs it (``python -m`` would put the cwd on sys.path itself)
CLI = Path(sys.executable).parent / "sandbox-platform"

SHOP_TASKS = '''\
"""shop_tasks: a user's app (README, "Your own app")."""

import os

import redis

from sandbox_platform import create_app
from sandbox_platform.guards import RetryPolicy
from sandbox_platform.tasks import guarded_task

app = create_app()
marks = redis.Redis.from_url(os.environ["SHOP_MARKS_URL"])


@guarded_task(app, retry=RetryPolicy(max_retries=0))
def ship(order_id: str) -> str:
    if marks.get("shop:closed"):
        raise RuntimeError("warehouse closed")
    marks.rpush("shop:shipped", order_id)
    return order_id


app.conf.beat_schedule = {
    "shop-stocktake": {"task": ship.name, "schedule": 1.0, "args": ["stocktake"]},
}
'''


def _run(
    cwd: Path, env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _start(cwd: Path, env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(CLI), *args],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    project = tmp_path / "shop"
    project.mkdir()
    (project / "shop_tasks.py").write_text(SHOP_TASKS)
    return project


@pytest.fixture
def shop_env(
    platform_settings_kwargs: dict[str, object], redis_url: str
) -> Iterator[dict[str, str]]:
    env = platform_env(**platform_settings_kwargs, heartbeat_interval=1, log_format="json")
    env.pop("PYTHONPATH", None)
    env["SHOP_MARKS_URL"] = redis_url
    yield env


def _shipped(client: redis.Redis) -> list[str]:
    return [item.decode() for item in client.lrange("shop:shipped", 0, -1)]


def test_platform_commands_run_a_user_app(
    shop: Path,
    shop_env: dict[str, str],
    platform_app,  # type: ignore[no-untyped-def]
    platform_settings_kwargs: dict[str, object],
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    worker = _start(
        shop, shop_env, tmp_path / "worker.log", "worker", "--processes", "1", "--app", "shop_tasks"
    )
    # the attribute form for beat: the start-up event names the app as given
    beat = _start(shop, shop_env, tmp_path / "beat.log", "beat", "--app", "shop_tasks:app")
    try:
        # the worker runs the user's task, sent by name from another process
        platform_app.send_task("shop_tasks.ship", args=["order-1"])
        wait_until(
            lambda: "order-1" in _shipped(redis_client),
            timeout=90,
            interval=0.2,
            message="the user's task did not run: " + (tmp_path / "worker.log").read_text()[-2000:],
        )
        # beat sends the user's periodic task beside the platform's heartbeat
        wait_until(
            lambda: "stocktake" in _shipped(redis_client),
            timeout=60,
            interval=0.2,
            message="the user's beat entry did not run: "
            + (tmp_path / "beat.log").read_text()[-2000:],
        )

        # readiness with the user's app: GO once the worker and the heartbeat are seen
        def ready() -> dict[str, object] | None:
            proc = _run(shop, shop_env, "readiness", "--json", "--app", "shop_tasks")
            report = json.loads(proc.stdout)
            return report if proc.returncode == 0 else None

        report = wait_until(ready, timeout=60, interval=1.0, message="readiness never said GO")
        assert report["verdict"] == "GO"
        assert report["notes"] == []

        # a failing job is dead-lettered; replay with the user's app runs it again
        redis_client.set("shop:closed", "1")
        failing = platform_app.send_task("shop_tasks.ship", args=["order-2"]).id
        engine = sa.create_engine(str(platform_settings_kwargs["database_url"]))

        def letter_id() -> int | None:
            with engine.connect() as conn:
                row = conn.execute(
                    sa.text("SELECT id FROM sp_dead_letters WHERE task_id = :task_id"),
                    {"task_id": failing},
                ).first()
            return None if row is None else int(row[0])

        dead = wait_until(letter_id, timeout=60, interval=0.2, message="no dead letter")
        engine.dispose()
        redis_client.delete("shop:closed")
        replay = _run(shop, shop_env, "dead-letters", "replay", str(dead), "--app", "shop_tasks")
        assert replay.returncode == 0, replay.stderr
        wait_until(
            lambda: "order-2" in _shipped(redis_client),
            timeout=60,
            interval=0.2,
            message="the replayed job did not run: "
            + (tmp_path / "worker.log").read_text()[-3000:],
        )
    finally:
        stop_group(worker)
        stop_group(beat)
    assert worker.returncode == 0, (tmp_path / "worker.log").read_text()[-2000:]

    # start-up lines tell the truth: the app as --app named it (not create_app's main), and
    # one lease holder on every line of the beat (Celery builds a scheduler for its banner)
    worker_events = json_lines((tmp_path / "worker.log").read_text())
    [worker_start] = [e for e in worker_events if e.get("event") == "celery worker starting"]
    assert worker_start["app"] == "shop_tasks", worker_start
    beat_events = json_lines((tmp_path / "beat.log").read_text())
    [beat_start] = [e for e in beat_events if e.get("event") == "celery beat starting"]
    assert beat_start["app"] == "shop_tasks:app", beat_start
    holders = [
        found.group(1) or found.group(2)
        for event in beat_events
        for text in (str(event.get("event")), str(event.get("scheduler_info", "")))
        if (found := HOLDER.search(text))
    ]
    assert len(holders) >= 2 and len(set(holders)) == 1, holders


@pytest.mark.parametrize(
    "command",
    [
        ("worker", "--processes", "1"),
        ("beat",),
        ("readiness", "--json"),
        ("status",),
        ("dead-letters", "replay", "1"),
        ("dashboard",),
        ("flower",),
        ("up",),
    ],
    ids=lambda c: c[0],
)
def test_an_app_that_cannot_be_imported_is_one_line_and_exit_2(
    command: tuple[str, ...], shop: Path, shop_env: dict[str, str]
) -> None:
    proc = _run(shop, shop_env, *command, "--app", "nosuchmod", timeout=120)

    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "nosuchmod" in lines[0] and "SANDBOX_PLATFORM_APP" in lines[0]
    assert "Traceback" not in proc.stderr


def test_the_setting_names_the_app_and_is_checked(shop: Path, shop_env: dict[str, str]) -> None:
    env = {**shop_env, "SANDBOX_PLATFORM_APP": "nosuchmod"}
    proc = _run(shop, env, "readiness", "--json")
    assert proc.returncode == 2 and "nosuchmod" in proc.stderr, proc.stderr

    env["SANDBOX_PLATFORM_APP"] = "not a module"
    proc = _run(shop, env, "status")
    assert proc.returncode == 2
    assert "SANDBOX_PLATFORM_APP" in proc.stderr and "not a module name" in proc.stderr

    env["SANDBOX_PLATFORM_APP"] = "shop_tasks"
    proc = _run(shop, env, "status", "--json")
    assert proc.returncode == 0, proc.stderr
