"""Shared fixtures: a real Redis, a real PostgreSQL, SQLite, and real worker processes.

Environment knobs (all optional):
  SP_TEST_REDIS_URL   base Redis (default redis://127.0.0.1:6379)
  SP_TEST_REDIS_DB    the db index tests own and flush (default 9)
  SP_TEST_PG_URL      a PostgreSQL server URL with rights to create databases
                      (default postgresql://postgres@127.0.0.1:5432/postgres)
  SP_TEST_AMQP_URL    the RabbitMQ server of the tests parametrized over both brokers
                      (tests/brokers.py; default amqp://guest:guest@127.0.0.1:5672)
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

# Fixtures that serve the dashboard and drive a beat (real processes).
pytest_plugins = ["tests.dashboard_fixtures"]

REDIS_BASE = os.environ.get("SP_TEST_REDIS_URL", "redis://127.0.0.1:6379")
REDIS_DB = int(os.environ.get("SP_TEST_REDIS_DB", "9"))
PG_SERVER = os.environ.get("SP_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def redis_url() -> Iterator[str]:
    """URL of a real Redis db index owned by the tests, flushed before and after each test."""
    url = f"{REDIS_BASE}/{REDIS_DB}"
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"the test Redis at {url} is not reachable: {exc}")
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def _pg_admin_engine() -> sa.Engine:
    url = sa.make_url(PG_SERVER).set(drivername="postgresql+psycopg")
    return sa.create_engine(url, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    return PG_SERVER


def create_pg_database(prefix: str = "sp_test") -> str:
    """Create a throw-away PostgreSQL database; return its URL (drop with drop_pg_database)."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    engine = _pg_admin_engine()
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return str(sa.make_url(PG_SERVER).set(database=name).render_as_string(hide_password=False))


def drop_pg_database(url: str) -> None:
    from sandbox_platform.db.engine import dispose_engines

    dispose_engines()
    name = sa.make_url(url).database
    engine = _pg_admin_engine()
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    url = create_pg_database()
    yield url
    drop_pg_database(url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sandbox.sqlite3'}"


@pytest.fixture(autouse=True)
def _clean_platform_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test inherits SANDBOX_PLATFORM_* variables from the shell that runs pytest."""
    for key in list(os.environ):
        if key.startswith("SANDBOX_PLATFORM_"):
            monkeypatch.delenv(key, raising=False)


# -- real worker processes --------------------------------------------------------------------

from tests.brokers import TestBroker, amqp_vhost  # noqa: E402
from tests.helpers import platform_env, wait_until  # noqa: E402
from tests.inflight import high_water  # noqa: E402
from tests.pools import IN_FLIGHT_FLOOR, POOLS  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _amqp_vhost_of_the_session() -> Iterator[None]:
    """The RabbitMQ virtual host a session made (on first use) is deleted at its end."""
    yield
    amqp_vhost.close()


@pytest.fixture
def broker(request: pytest.FixtureRequest, redis_url: str) -> Iterator[TestBroker]:
    """The test's broker: Redis (the coordination Redis, as by default) unless the test is
    parametrized with ``tests.brokers.ON_BOTH_BROKERS``; on RabbitMQ its queues are deleted
    before and after the test (after the workers stopped: they depend on this fixture)."""
    kind = getattr(request, "param", "redis")
    if kind == "redis":
        yield TestBroker("redis", redis_url)
        return
    found = TestBroker("rabbitmq", redis_url, amqp_vhost.get())
    found.check_reachable()
    found.delete_queues()
    yield found
    found.delete_queues()


@pytest.fixture
def platform_settings_kwargs(
    redis_url: str, sqlite_url: str, tmp_path: Path, broker: TestBroker
) -> dict[str, object]:
    """Settings every process of one test shares: the test Redis, a migrated SQLite db, the
    test's broker."""
    from sandbox_platform.db import migrate

    migrate.upgrade(sqlite_url)
    return {
        "redis_url": redis_url,
        "database_url": sqlite_url,
        "data_dir": tmp_path / "data",
        **broker.settings(),
    }


@pytest.fixture
def pg_databases() -> Iterator[tuple[str, str]]:
    """Two migrated throw-away PostgreSQL databases: (sandbox, live)."""
    from sandbox_platform.db import migrate

    sandbox, live = create_pg_database("sp_sandbox"), create_pg_database("sp_live")
    try:
        migrate.upgrade(sandbox)
        migrate.upgrade(live)
        yield sandbox, live
    finally:
        drop_pg_database(sandbox)
        drop_pg_database(live)


@pytest.fixture
def pg_settings_kwargs(
    redis_url: str, pg_databases: tuple[str, str], tmp_path: Path, broker: TestBroker
) -> dict[str, object]:
    """Settings on PostgreSQL: a sandbox and a live database, both migrated; the test's
    broker."""
    sandbox, live = pg_databases
    return {
        "redis_url": redis_url,
        "database_url": sandbox,
        "live_database_url": live,
        "data_dir": tmp_path / "data",
        **broker.settings(),
    }


@pytest.fixture
def platform_app(platform_settings_kwargs: dict[str, object]):  # type: ignore[no-untyped-def]
    """A Celery app in the test process, configured like the workers, for enqueuing."""
    from sandbox_platform.app.factory import create_app, release_app
    from sandbox_platform.app.runtime import reset_runtime
    from sandbox_platform.core.settings import load_settings

    reset_runtime()
    app = create_app(load_settings(**platform_settings_kwargs))
    yield app
    reset_runtime()
    release_app(app)


@pytest.fixture
def guarded(platform_app):  # type: ignore[no-untyped-def]
    """The test tasks (tests/task_defs.py) declared on the test process's app."""
    from tests.task_defs import register

    return register(platform_app)


@pytest.fixture
def worker_pool(request: pytest.FixtureRequest) -> str:
    """The pool of the test's workers: solo unless the module runs ``ON_BOTH_POOLS``."""
    return str(getattr(request, "param", "solo"))


#: module -> the most jobs its threads workers had in flight at once (tests/pools.py)
IN_FLIGHT_HIGH: dict[str, int] = {}


@pytest.fixture
def worker_factory(  # type: ignore[no-untyped-def]
    request: pytest.FixtureRequest,
    tmp_path: Path,
    platform_settings_kwargs: dict[str, object],
    worker_pool: str,
):
    """Start real ``celery worker`` processes; every one is stopped by its pid afterwards.

    Workers run on the test's ``worker_pool`` unless ``pool`` is given; threads workers
    count their jobs in flight (tests/inflight.py)."""
    from sandbox_platform.procs.worker import WorkerSubprocess

    started: list[WorkerSubprocess] = []
    in_flight_key = f"sp-test:inflight:{uuid.uuid4().hex}"

    def start(
        app,
        app_module: str = "workers",
        *,
        wait: bool = True,
        pool: str | None = None,  # type: ignore[no-untyped-def]
        concurrency: int | None = None,
        **overrides: object,
    ):
        pool = pool or worker_pool
        settings = {**platform_settings_kwargs, **overrides}
        env = platform_env(**settings)
        if pool == "threads":  # counted through tests/counted.py
            env |= {"SP_TEST_COUNTED_APP": app_module, "SP_TEST_INFLIGHT_KEY": in_flight_key}
            env |= {"SP_TEST_INFLIGHT_URL": str(settings["redis_url"])}
            app_module = "tests.counted"
        index = len(started) + 1
        worker = WorkerSubprocess(
            app_module,
            hostname=f"test{index}-{uuid.uuid4().hex[:6]}@localhost",
            env=env,
            log_path=tmp_path / f"worker-{index}.log",
            pool=pool,
            concurrency=concurrency or POOLS.get(pool, 1),
        )
        started.append(worker)
        worker.start()
        if wait:
            worker.wait_ready(app, timeout=60)
        return worker

    yield start
    for worker in started:
        worker.stop(timeout=15)
    if any(worker.pool == "threads" for worker in started):
        client = redis.Redis.from_url(str(platform_settings_kwargs["redis_url"]))
        module = request.module.__name__
        high = high_water(client, in_flight_key)
        IN_FLIGHT_HIGH[module] = max(IN_FLIGHT_HIGH.get(module, 0), high)


@pytest.fixture(scope="module", autouse=True)
def _threads_runs_interleaved(request: pytest.FixtureRequest) -> Iterator[None]:
    """A module run on both pools proves that its threads workers had jobs in flight at
    once (tests/pools.py)."""
    yield
    module = request.module.__name__
    if module in IN_FLIGHT_HIGH:
        high = IN_FLIGHT_HIGH.pop(module)
        assert high >= IN_FLIGHT_FLOOR, (
            f"{module}: its threads workers never had {IN_FLIGHT_FLOOR} jobs in flight at "
            f"once (at most {high})"
        )


@pytest.fixture
def processes():  # type: ignore[no-untyped-def]
    """multiprocessing processes a test starts; terminated and joined afterwards."""
    started: list[object] = []
    yield started
    for proc in started:
        if proc.is_alive():  # type: ignore[attr-defined]
            proc.terminate()  # type: ignore[attr-defined]
        proc.join(5)  # type: ignore[attr-defined]


@pytest.fixture
def live_ready_limits(redis_client: redis.Redis) -> None:
    """Limits for every resource tests/task_defs.py declares, so live workers pass readiness."""
    from sandbox_platform.coordination.governor import Governor

    Governor(redis_client, "sp").set_limit("test-bucket", 1000, 1.0)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A redis-server of this test only; stopped by its pid whatever happens."""
    port = _free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        wait_until(answers, timeout=10, message=f"private redis-server on {port} did not start")
        yield proc, url
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


# -- the pools (tests/pools.py) ---------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marked = metafunc.definition.get_closest_marker("both_pools") is not None
    solo_only = metafunc.definition.get_closest_marker("solo_only") is not None
    if marked and not solo_only and "worker_factory" in metafunc.fixturenames:
        metafunc.parametrize("worker_pool", list(POOLS), indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Threads on RabbitMQ only where a test asks for it (a smoke test)."""
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        threads_on_rabbitmq = params.get("worker_pool") == "threads" and (
            params.get("broker") == "rabbitmq"
        )
        if threads_on_rabbitmq and item.get_closest_marker("threads_on_rabbitmq") is None:
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


# -- the soak (tests/reliability with --soak) --------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        action="store_true",
        default=False,
        help="run the reliability suite's longer soak (more jobs, more kills)",
    )


@pytest.fixture
def soak(request: pytest.FixtureRequest) -> bool:
    """True under ``--soak``: fault tests scale their jobs and faults up."""
    return bool(request.config.getoption("--soak"))
