"""What needs a missing extra says which one, in one line (exit code 2 at the command line),
and readiness gives the reason (EXTRA_MISSING): the dashboard, Flower, a postgresql:// URL,
SANDBOX_PLATFORM_OTEL=1, no Redis URL without an embedded redis-server.

The extras are installed here (the dev extra takes them all); each test hides the modules of
the one it is about (tests/import_blocker.py), in this process or in a child.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sandbox_platform.core import embedded, extras
from sandbox_platform.core.errors import ExtraMissing, SettingsError
from sandbox_platform.core.extras import EXTRAS, configured_missing, installed
from sandbox_platform.core.settings import load_settings
from sandbox_platform.db.engine import get_engine
from sandbox_platform.integrations import tracing
from sandbox_platform.ops.readiness import EXTRA_MISSING, OK, ReadinessChecker
from tests.import_blocker import EXTRA_MODULES, without

ROOT = Path(__file__).resolve().parents[2]
PG_URL = "postgresql://u:p@127.0.0.1:1/sp_extras"  # never connected to
REDIS_URL = "redis://127.0.0.1:1/0"  # never connected to


def _hint(extra: str) -> str:
    return f"needs the [{extra}] extra: pip install 'sandbox-platform[{extra}]'"


def test_every_extra_is_installed_in_the_dev_environment() -> None:
    assert (
        set(EXTRAS)
        == set(EXTRA_MODULES)
        == {
            "dashboard",
            "flower",
            "postgres",
            "otel",
            "embedded",
        }
    )
    assert all(installed(name) for name in EXTRAS)


@pytest.mark.parametrize("extra", sorted(EXTRA_MODULES))
def test_a_hidden_extra_is_not_installed(monkeypatch: pytest.MonkeyPatch, extra: str) -> None:
    without(monkeypatch, extra)
    assert not installed(extra)
    assert all(installed(other) for other in EXTRAS if other != extra)


def test_the_extras_match_pyproject() -> None:
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert set(EXTRAS) <= set(optional)
    assert optional["all"] == [f"sandbox-platform[{','.join(EXTRAS)}]"]


# -- settings that need an extra ----------------------------------------------------------------


def test_a_postgresql_url_without_psycopg(monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> None:
    without(monkeypatch, "postgres")
    settings = load_settings(redis_url=REDIS_URL, database_url=PG_URL)
    (missing,) = configured_missing(settings)
    assert str(missing) == f"SANDBOX_PLATFORM_DATABASE_URL: a postgresql:// URL {_hint('postgres')}"
    assert isinstance(missing, SettingsError)
    with pytest.raises(ExtraMissing, match=r"a postgresql:// URL needs the \[postgres\] extra"):
        get_engine(PG_URL + "_engine")
    get_engine(sqlite_url)  # SQLite needs nothing
    assert configured_missing(load_settings(redis_url=REDIS_URL, database_url=sqlite_url)) == []


def test_a_live_postgresql_url_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    without(monkeypatch, "postgres")
    settings = load_settings(
        mode="live",
        redis_url=REDIS_URL,
        live_database_url=PG_URL,
        app="tests.worker_app",
    )
    (missing,) = configured_missing(settings)
    assert str(missing).startswith("SANDBOX_PLATFORM_LIVE_DATABASE_URL: a postgresql:// URL")


def test_otel_on_without_opentelemetry(monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> None:
    without(monkeypatch, "otel")
    settings = load_settings(redis_url=REDIS_URL, database_url=sqlite_url, otel=True)
    message = f"SANDBOX_PLATFORM_OTEL: OpenTelemetry tracing {_hint('otel')}"
    assert [str(error) for error in configured_missing(settings)] == [message]
    with pytest.raises(ExtraMissing) as caught:
        tracing.install_tracing(settings)
    assert str(caught.value) == message
    assert not tracing.tracing_installed()


def test_no_redis_url_without_an_embedded_server(
    monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    without(monkeypatch, "embedded")
    monkeypatch.setattr("shutil.which", lambda _name: None)  # no redis-server on PATH either
    settings = load_settings(database_url=sqlite_url)
    assert settings.embedded_redis
    message = (
        f"SANDBOX_PLATFORM_REDIS_URL: not set: the embedded Redis {_hint('embedded')} "
        "(or redis-server on PATH, or set a Redis URL)"
    )
    assert [str(error) for error in configured_missing(settings)] == [message]
    with pytest.raises(ExtraMissing) as caught:
        embedded.redis_server_binary()
    assert str(caught.value) == message


def test_redis_server_on_path_is_enough_without_the_extra(
    monkeypatch: pytest.MonkeyPatch, sqlite_url: str
) -> None:
    without(monkeypatch, "embedded")
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")
    assert configured_missing(load_settings(database_url=sqlite_url)) == []
    assert embedded.redis_server_binary() == "/usr/bin/redis-server"


def test_everything_missing_is_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    without(monkeypatch, "postgres", "otel", "embedded")
    monkeypatch.setattr("shutil.which", lambda _name: None)
    settings = load_settings(database_url=PG_URL, otel=True)
    assert [error.extra for error in configured_missing(settings)] == [
        "postgres",
        "otel",
        "embedded",
    ]
    with pytest.raises(ExtraMissing, match=r"\[postgres\]"):
        extras.require_configured(settings)


# -- readiness -----------------------------------------------------------------------------------


def test_readiness_gives_the_missing_extra_as_its_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    without(monkeypatch, "postgres", "embedded")
    monkeypatch.setattr("shutil.which", lambda _name: None)
    # a data dir of its own: an embedded server another test left answering on the default
    # one would be found (and its PING answered) without any binary
    settings = load_settings(database_url=PG_URL, data_dir=tmp_path / "data")
    report = ReadinessChecker(
        settings, skip=["migrations", "broker", "worker", "beat", "config", "governor"]
    ).run()
    codes = {check.name: check.code for check in report.checks}
    assert not report.go
    # the extras check names both; the checks that would use them say why they cannot
    assert codes["extras"] == codes["database"] == codes["redis"] == EXTRA_MISSING
    assert report.reasons[0] == EXTRA_MISSING
    extras_check = report.get("extras")
    assert extras_check is not None
    assert "[postgres]" in extras_check.message and "[embedded]" in extras_check.message
    database = report.get("database")
    assert database is not None and "[postgres]" in database.message


def test_readiness_extras_check_passes_when_installed(sqlite_url: str) -> None:
    settings = load_settings(redis_url=REDIS_URL, database_url=sqlite_url, otel=True)
    report = ReadinessChecker(settings, skip=[n for n in ReadinessChecker.checks if n != "extras"])
    (check,) = report.run().checks
    assert check.code == OK, check


# -- the command line (a child process with the extra's modules refused) ---------------------


def _blocked_cli(extra: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    names = ",".join(EXTRA_MODULES[extra])
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_PLATFORM_")}
    environment.update(env)
    environment["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "tests.import_blocker", names, "sandbox_platform", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("extra", "command", "line"),
    [
        ("dashboard", ["dashboard"], "the dashboard"),
        ("dashboard", ["up"], "the up command (it serves the dashboard)"),
        ("flower", ["flower"], "Flower"),
    ],
)
def test_a_command_of_a_missing_extra_is_one_line_exit_2(
    extra: str, command: list[str], line: str
) -> None:
    done = _blocked_cli(extra, *command)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"sandbox-platform: {line} {_hint(extra)}\n"
    assert done.stdout == ""


def test_a_postgresql_url_without_psycopg_at_the_command_line() -> None:
    done = _blocked_cli(
        "postgres",
        "db",
        "upgrade",
        SANDBOX_PLATFORM_DATABASE_URL=PG_URL,
        SANDBOX_PLATFORM_REDIS_URL=REDIS_URL,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "sandbox-platform: configuration error: SANDBOX_PLATFORM_DATABASE_URL: "
        f"a postgresql:// URL {_hint('postgres')}\n"
    )


def test_readiness_at_the_command_line_reports_it(sqlite_url: str) -> None:
    """OTEL=1 without opentelemetry: the app is not loaded (it would refuse to start), the
    report says NO-GO with EXTRA_MISSING, exit 1."""
    done = _blocked_cli(
        "otel",
        "readiness",
        "--json",
        "--app",
        "tests.worker_app",
        "--skip",
        "database,migrations,redis,broker,worker,beat,config,isolation,governor,secret_keys",
        SANDBOX_PLATFORM_DATABASE_URL=sqlite_url,
        SANDBOX_PLATFORM_REDIS_URL=REDIS_URL,
        SANDBOX_PLATFORM_OTEL="1",
    )
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["reasons"] == [EXTRA_MISSING]
    assert report["checks"][0]["message"] == (
        f"SANDBOX_PLATFORM_OTEL: OpenTelemetry tracing {_hint('otel')}"
    )
    assert report["notes"] == [
        f"tests.worker_app not loaded: SANDBOX_PLATFORM_OTEL: OpenTelemetry tracing {_hint('otel')}"
    ]
    assert "Traceback" not in done.stderr


# -- docs/upgrading.md: what 0.1.0 installed by default, and the extra that brings it now ----

RELEASE_0_1 = "ea4984dd1f6829e42cea35fa5fe800d130911cfe"  # tests/reliability/test_upgrade_from_0_1


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_upgrading_names_the_extra_of_everything_0_1_installed() -> None:
    shown = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{RELEASE_0_1}:pyproject.toml"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0, f"needs 0.1.0 in the history: {shown.stderr}"
    old = tomllib.loads(shown.stdout)["project"]
    now = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    moved = _names(old["dependencies"]) - _names(now["dependencies"])
    assert moved == {"psycopg", "flower", "prometheus-client"}
    rows = {}
    for line in (ROOT / "docs" / "upgrading.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 3:
            rows[re.findall(r"`([^`\[]+)", cells[0])[0]] = cells[1].strip("`[]")
    for name in moved | _names(old["optional-dependencies"]["embedded"]):
        extra = rows[name]
        assert name in _names(now["optional-dependencies"][extra]), (name, extra)
