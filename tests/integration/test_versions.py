"""Celery or kombu outside the supported range (broker/versions.py), in real processes: a
worker refuses to start in one line with exit code 2; a producer publishes through kombu's
stock Redis channel with one warning, and a worker of a supported version runs its job."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.helpers import platform_env, wait_until

pytestmark = pytest.mark.slow

#: run ``body`` with kombu claiming an unsupported version
PRELUDE = "import kombu, sys\nkombu.__version__ = '5.6.2'\n"


def _python(
    code: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_a_worker_on_an_unsupported_kombu_exits_2_in_one_line(platform_settings_kwargs) -> None:
    env = platform_env(**platform_settings_kwargs)
    done = _python(
        """
        from celery.__main__ import main
        sys.argv = ["celery", "-A", "tests.worker_app", "worker", "-P", "solo"]
        main()
        """,
        env,
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [
        "sandbox-platform: configuration error: installed packages: kombu 5.6.2 "
        "(supported: >=5.7,<5.8): outside the versions sandbox-platform runs on"
    ], done.stderr


def test_a_producer_on_an_unsupported_kombu_publishes_through_the_stock_channel(
    platform_settings_kwargs, platform_app, worker_factory, redis_client
) -> None:
    env = platform_env(**platform_settings_kwargs)
    worker_factory(platform_app, "tests.worker_app")
    done = _python(
        """
        from tests.worker_app import app, tasks
        print(app.conf.broker_transport)
        tasks.ttl_once.delay("stock-1", "stock-runs")
        tasks.ttl_once.delay("stock-2", "stock-runs")
        """,
        env,
    )
    assert done.returncode == 0, done.stderr
    output = (done.stdout + done.stderr).splitlines()
    assert output[0] == "None", output  # not the platform's transport
    warnings = [line for line in output if "stock Redis channel" in line]
    assert len(warnings) == 1, output
    assert "kombu 5.6.2" in warnings[0]
    wait_until(lambda: redis_client.llen("stock-runs") == 2, timeout=60)
