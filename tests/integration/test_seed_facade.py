"""The seed's README snippets, run as written against the real platform.

Each snippet of the seed brief (Quick Start, Integration Example, Configuration,
Monitoring, Troubleshooting) is stored verbatim under ``tests/seed_examples/`` and executed
with one change: ``from services.sandbox import`` becomes
``from sandbox_platform.orchestrator import``. A small preamble defines the names the snippets
use without defining them (``payment_func``, ``func``, ``RetryBackoffManager``,
``WorkerProcess`` and, for the fragments, ``sandbox``).

Everything is real: a real Redis (the test db, or the embedded redis-server the facade
starts), SQLite files shared with real ``celery worker`` and ``celery beat`` processes. One
orchestrator on the test Redis is shared by the tests of this module; the Quick Start and the
Integration Example build their own (as written) on embedded Redis servers, so their workers
never share a queue with the shared one.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from sandbox_platform.core.embedded import ensure_embedded_redis, stop_embedded_redis
from sandbox_platform.core.errors import PayloadError, PlatformError
from sandbox_platform.core.settings import load_settings
from sandbox_platform.guards.dry_run import default_simulation
from sandbox_platform.orchestrator import SandboxOrchestrator, WorkerProcess
from tests.helpers import wait_until

pytestmark = pytest.mark.slow

SEED_DIR = Path(__file__).resolve().parents[1] / "seed_examples"
# sha256 of each snippet as copied from the brief (checked against it when they were stored)
SEED_SUMS = SEED_DIR / "SHA256SUMS"
SEED_IMPORT = "from services.sandbox import"
OUR_IMPORT = "from sandbox_platform.orchestrator import"
SEED_STATUS_KEYS = {
    "readiness",
    "heartbeat",
    "governor",
    "worker_queue_length",
    "completed_jobs",
    "alerts",
    "idempotent_operations",
}
TEST_REDIS_URL = "{}/{}".format(
    os.environ.get("SP_TEST_REDIS_URL", "redis://127.0.0.1:6379"),
    os.environ.get("SP_TEST_REDIS_DB", "9"),
)  # the same Redis db the conftest fixtures own
SNIPPETS = sorted(p.name for p in SEED_DIR.glob("*.py.txt"))


def snippet_source(name: str) -> str:
    """The stored snippet with the import line changed, and nothing else."""
    text = (SEED_DIR / name).read_text()
    return text.replace(SEED_IMPORT, OUR_IMPORT)


def run_snippet(name: str, namespace: dict[str, Any]) -> dict[str, Any]:
    code = compile(snippet_source(name), str(SEED_DIR / name), "exec")
    exec(code, namespace)  # noqa: S102  (the seed's own example code, from this repo)
    return namespace


def preamble(**names: Any) -> dict[str, Any]:
    """The names the snippets use but do not define; calls are counted in ``calls``."""
    calls: dict[str, int] = {"payment_func": 0, "func": 0}

    def payment_func(amount: int) -> dict[str, Any]:
        calls["payment_func"] += 1
        return {"charged": amount}

    def func() -> str:
        calls["func"] += 1
        return "done"

    namespace: dict[str, Any] = {
        "__name__": "seed_example",
        "payment_func": payment_func,
        "func": func,
        "calls": calls,
        **names,
    }
    exec(f"{OUR_IMPORT} RetryBackoffManager, WorkerProcess", namespace)  # noqa: S102
    return namespace


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a daemon's parent may never reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def assert_all_stopped(pids: list[int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    alive = [pid for pid in pids if _running(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [pid for pid in alive if _running(pid)]
    assert not alive, f"still running after cleanup: {alive}"


# -- the shared orchestrator on the test Redis ---------------------------------------------------


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxOrchestrator]:
    """One orchestrator for the module: ``use_memory_db=True`` with SANDBOX_PLATFORM_REDIS_URL
    pointing at the test Redis db, and the test task module in its workers."""
    url = TEST_REDIS_URL
    client = redis.Redis.from_url(url)
    client.flushdb()
    orchestrator = SandboxOrchestrator(use_memory_db=True, app_module="tests.worker_app")
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith("SANDBOX_PLATFORM_"):
                patch.delenv(key)
        patch.setenv("SANDBOX_PLATFORM_REDIS_URL", url)
        orchestrator.initialize()
    try:
        yield orchestrator
    finally:
        orchestrator.cleanup()
        assert len(orchestrator.started_pids) == 2  # one worker, one beat; Redis is the test's
        assert_all_stopped(orchestrator.started_pids)
        client.flushdb()
        client.close()


# -- the snippets are the seed's -----------------------------------------------------------------


def test_snippets_are_stored_verbatim() -> None:
    assert len(SNIPPETS) == 10
    sums = dict(reversed(line.split("  ", 1)) for line in SEED_SUMS.read_text().splitlines())
    assert sorted(sums) == SNIPPETS
    for name in SNIPPETS:
        digest = hashlib.sha256((SEED_DIR / name).read_bytes()).hexdigest()
        assert digest == sums[name], f"{name} differs from the seed"


def test_only_the_import_line_changes() -> None:
    for name in SNIPPETS:
        original = (SEED_DIR / name).read_text().splitlines()
        ours = snippet_source(name).splitlines()
        changed = [(a, b) for a, b in zip(original, ours, strict=True) if a != b]
        assert all(a.startswith(SEED_IMPORT) for a, _ in changed), changed


# -- Quick Start and Integration Example, each building its own orchestrator -------------------


def test_quick_start_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    namespace = run_snippet("quick_start.py.txt", preamble())

    assert "Ready: True" in capsys.readouterr().out
    assert namespace["allowed"] is True
    assert isinstance(namespace["msg"], str) and namespace["msg"].startswith("payment")
    assert namespace["calls"]["payment_func"] == 0, "sandbox mode must not run the payment"
    assert set(namespace["status"]) == SEED_STATUS_KEYS
    assert namespace["status"]["readiness"]["ready"] is True
    assert namespace["status"]["alerts"] >= 1  # the intercepted payment raised an info alert

    sandbox: SandboxOrchestrator = namespace["sandbox"]  # cleaned up by the snippet
    assert sandbox.embedded_redis_pid is not None, "no Redis URL set: the embedded one runs"
    assert len(sandbox.started_pids) == 3  # one worker, one beat, the embedded redis-server
    assert_all_stopped(sandbox.started_pids)
    assert sandbox.redis_url is not None
    client = redis.Redis.from_url(sandbox.redis_url, socket_connect_timeout=1)
    with pytest.raises(redis.ConnectionError):
        client.ping()
    client.close()
    with pytest.raises(PlatformError, match=r"initialize\(\)"):
        sandbox.get_status()


def test_context_manager_without_beat() -> None:
    with SandboxOrchestrator(beat=False) as sandbox:
        assert sandbox.beat_process is None
        assert sandbox.heartbeat.is_healthy()  # the first tick, sent through the worker
        assert sandbox.is_ready()
        assert sandbox.worker.is_running
    assert len(sandbox.started_pids) == 2  # one worker, the embedded redis-server
    assert_all_stopped(sandbox.started_pids)
    assert not sandbox.initialized


def test_integration_example_as_written() -> None:
    namespace = run_snippet("integration_example.py.txt", preamble())
    payments: list[tuple[str, int]] = []

    processor = namespace["PaymentProcessor"]()  # initializes its own orchestrator
    do_payment = processor._do_payment

    def counting_do_payment(user_id: str, amount: int) -> Any:
        payments.append((user_id, amount))
        return do_payment(user_id, amount)

    processor._do_payment = counting_do_payment  # count the real calls of the seed's method
    sandbox: SandboxOrchestrator = processor.sandbox
    try:
        first = processor.process_payment("user-1", 100)
        assert first == default_simulation("payment", first["function"])
        assert first["dry_run"] is True and first["simulated"] is True
        second = processor.process_payment("user-1", 100)
        assert second == first
        assert payments == [("user-1", 100)], "the same key must be processed once"
        stored = sandbox.idempotency_manager.process_idempotent(
            "payment-user-1-100", processor._do_payment, "user-1", 100
        )
        assert stored == {"status": "completed", "amount": 100}
        assert payments == [("user-1", 100)]
        processor.process_payment("user-2", 100)
        assert payments == [("user-1", 100), ("user-2", 100)]
        assert sandbox.get_status()["idempotent_operations"] == 2
    finally:
        sandbox.cleanup()
    assert len(sandbox.started_pids) == 3
    assert_all_stopped(sandbox.started_pids)


# -- Configuration, Monitoring, Troubleshooting on the shared orchestrator ---------------------


def test_configuration_as_written(sandbox: SandboxOrchestrator) -> None:
    namespace = preamble(sandbox=sandbox)
    for name in (
        "configuration_default_limits.py.txt",
        "configuration_retry_strategy.py.txt",
        "configuration_worker.py.txt",
    ):
        run_snippet(name, namespace)

    def limits(resource: str) -> list[tuple[int, float]]:
        return [(lim.limit, lim.per_seconds) for lim in sandbox.governor.limits(resource)]

    assert limits("payment") == [(100, 3600.0)]
    assert limits("api_call") == [(1000, 60.0)]
    assert limits("data_export") == [(10, 3600.0)]
    verdicts = [sandbox.governor.check_limit("data_export") for _ in range(11)]
    assert all(allowed for allowed, _ in verdicts[:10])
    allowed, message = verdicts[10]
    assert allowed is False
    assert "rate limited" in message
    assert sandbox.get_status()["governor"]["data_export"]["denials"] == 1

    retry = namespace["retry"]
    assert (retry.policy.max_retries, retry.policy.base, retry.policy.cap) == (3, 1.0, 60.0)
    worker = namespace["worker"]
    assert isinstance(worker, WorkerProcess)
    assert (worker.poll_interval, worker.max_workers) == (5.0, 4)
    assert worker.is_running is False  # configured, not started


def test_monitoring_as_written(
    sandbox: SandboxOrchestrator, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace = run_snippet("monitoring.py.txt", preamble(sandbox=sandbox))
    out = capsys.readouterr().out.splitlines()
    assert "Healthy: True" in out
    assert "Ready: True" in out
    assert "Worker running: True" in out
    status = namespace["status"]
    assert set(status) == SEED_STATUS_KEYS
    assert status["readiness"]["ready"] is True
    assert status["readiness"]["verdict"] == "GO"
    assert status["heartbeat"]["healthy"] is True
    assert all(
        isinstance(status[k], int)
        for k in ("worker_queue_length", "completed_jobs", "alerts", "idempotent_operations")
    )


def test_troubleshooting_as_written(
    sandbox: SandboxOrchestrator, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace = preamble(sandbox=sandbox)
    run_snippet("configuration_retry_strategy.py.txt", namespace)  # defines ``retry``
    run_snippet("troubleshooting_not_ready.py.txt", namespace)
    assert "Failed:" not in capsys.readouterr().out  # ready: no check failed
    run_snippet("troubleshooting_rate_limits.py.txt", namespace)
    assert [lim.limit for lim in sandbox.governor.limits("payment")] == [1000]
    run_snippet("troubleshooting_workers.py.txt", namespace)
    assert (namespace["worker"].poll_interval, namespace["worker"].max_workers) == (0.5, 8)
    run_snippet("troubleshooting_retries.py.txt", namespace)
    assert namespace["result"] == "done"
    assert namespace["calls"]["func"] == 1


# -- the worker facade ---------------------------------------------------------------------------


def test_submit_runs_on_a_real_worker(sandbox: SandboxOrchestrator, tmp_path: Path) -> None:
    sink = tmp_path / "charges.txt"
    before = sandbox.worker.completed_jobs()
    task_ids = [sandbox.worker.submit("tests.charge", str(sink), n) for n in (1, 2, 3)]
    assert len(set(task_ids)) == 3
    wait_until(
        lambda: sandbox.worker.completed_jobs() >= before + 3,
        timeout=20,
        message="three job runs recorded as succeeded",
    )
    assert sandbox.worker.queue_length() == 0
    assert not sink.exists(), "sandbox mode: the irreversible charge was intercepted"
    assert sandbox.get_status()["completed_jobs"] >= before + 3
    with pytest.raises(PayloadError, match=r"tests\.charge"):
        sandbox.worker.submit("tests.charge", str(sink), object())


def test_queue_length_counts_waiting_messages(sandbox: SandboxOrchestrator) -> None:
    """With the workers stopped, published jobs wait in the queue; a restart drains it."""
    sandbox.worker.stop()
    assert sandbox.worker.is_running is False
    try:
        with pytest.raises(PlatformError, match=r"start\(\)"):
            sandbox.worker.submit("tests.charge", "/nonexistent", 1)
        app = sandbox.app
        before = sandbox.worker.queue_length()
        for n in range(3):
            app.send_task("tests.charge", args=["/nonexistent", n])
        waiting = sandbox.worker.queue_length() - before
        assert waiting in (3, 4)  # 4 if beat published a heartbeat tick meanwhile
    finally:
        sandbox.worker.start()
    assert sandbox.worker.is_running is True
    wait_until(lambda: sandbox.worker.queue_length() == 0, timeout=20, message="queue drained")


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "argument"),
    [
        (lambda: SandboxOrchestrator(workers=0), "workers"),
        (lambda: SandboxOrchestrator(use_memory_db="yes"), "use_memory_db"),  # type: ignore[arg-type]
        (lambda: SandboxOrchestrator(app_module=""), "app_module"),
        (lambda: WorkerProcess(max_workers=0), "max_workers"),
        (lambda: WorkerProcess(poll_interval=0), "poll_interval"),
        (lambda: WorkerProcess(poll_interval=-1.0), "poll_interval"),
    ],
)
def test_bad_arguments_name_themselves(factory: Callable[[], object], argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        factory()


def test_use_before_initialize_says_so() -> None:
    sandbox = SandboxOrchestrator()
    for use in (
        sandbox.get_status,
        sandbox.is_ready,
        lambda: sandbox.governor,
        lambda: sandbox.dry_run_lock,
        lambda: sandbox.worker,
    ):
        with pytest.raises(PlatformError, match=r"call initialize\(\)"):
            use()
    sandbox.cleanup()  # harmless when nothing was started


def test_given_settings_leave_a_redis_it_did_not_start_running(tmp_path: Path) -> None:
    """``settings=`` wins; an embedded redis-server that was already running is not stopped."""
    data_dir = tmp_path / "data"
    url = ensure_embedded_redis(data_dir)  # someone else's embedded server, already up
    settings = load_settings(
        data_dir=data_dir, database_url=f"sqlite:///{tmp_path / 'given.sqlite3'}"
    )
    try:
        with SandboxOrchestrator(settings=settings, beat=False) as sandbox:
            assert sandbox.settings is settings
            assert sandbox.redis_url == url
            assert sandbox.embedded_redis_pid is None  # found, not started
            assert sandbox.is_ready()
        assert_all_stopped(sandbox.started_pids)
        client = redis.Redis.from_url(url)
        assert client.ping(), "cleanup stopped a Redis it did not start"
        client.close()
    finally:
        stop_embedded_redis(data_dir)
