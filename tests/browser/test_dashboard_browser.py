"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against a real
worker, beat and Redis: GO/NO-GO, a live alert, the sandbox log, a replay from the page,
one correlation id's chain, and 401 without credentials.

Screenshots go to ``build/screenshots/dashboard/`` (printed at the end).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox_platform.core.context import bind_correlation_id
from tests.dashboard_fixtures import PASSWORD, USER
from tests.helpers import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("live_ready_limits")]

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WAIT_MS = 60_000


@pytest.fixture
def browser() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def system(guarded, worker_factory, platform_app, beat_factory, dashboard_factory) -> Any:
    """A worker, a beat (1 s heartbeat) and the dashboard (with credentials)."""
    fast = {"heartbeat_interval": 1}
    worker_factory(platform_app, "tests.worker_app", **fast)
    beat_factory(**fast)
    return dashboard_factory(**fast)


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_dashboard_in_a_browser(browser, system, guarded, redis_client, tmp_path) -> None:
    base = system.http.base
    context = browser.new_context(
        http_credentials={"username": USER, "password": PASSWORD},
        viewport={"width": 1280, "height": 900},
    )
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)

    # GO/NO-GO: the page says GO once the worker answers and beat has ticked
    def says_go() -> bool:
        page.goto(base + "/")
        return bool(page.inner_text("#verdict") == "GO")

    wait_until(says_go, timeout=60, interval=1.0, message="the dashboard never showed GO")
    shot(page, "01-go-no-go")

    # a failing task's alert appears on the open alerts page without a reload
    page.goto(base + "/alerts")
    page.evaluate("window.__notReloaded = true")
    guarded.always_fails.delay("browser-fails")
    page.wait_for_selector("#alert-rows tr:has-text('task_failed')")
    assert page.evaluate("window.__notReloaded === true")
    shot(page, "02-live-alert")

    # a sandbox intercept appears in the sandbox log, with its correlation id
    page.goto(base + "/sandbox")
    with bind_correlation_id(f"sandbox-{uuid.uuid4().hex[:8]}") as intercepted:
        guarded.charge.delay(str(tmp_path / "sink"), 7)
    row = page.wait_for_selector(f"#sandbox-rows tr:has-text('{intercepted}')")
    assert "payment" in row.inner_text()
    assert not (tmp_path / "sink").exists()  # the real charge never ran
    shot(page, "03-sandbox-log")

    # a dead letter is replayed from the page and runs
    guarded.fails_until_fixed.delay("order-browser", "browser-fixed-runs")
    replay = "tr:has-text('tests.fails_until_fixed') button.replay"

    def listed() -> bool:
        page.goto(base + "/dead-letters")
        return page.locator(replay).count() > 0

    wait_until(listed, timeout=60, interval=1.0, message="the dead letter never appeared")
    redis_client.set("fixed", "1")
    page.locator(replay).first.click()
    page.wait_for_selector(".notice:has-text('replayed as task')")
    wait_until(lambda: redis_client.lrange("browser-fixed-runs", 0, -1) == [b"order-browser"])
    shot(page, "04-dead-letter-replayed")
    page.goto(base + "/audit")
    assert "dead_letter.replay" in page.inner_text("table") and USER in page.inner_text("table")

    # one correlation id: the parent job and the child it enqueued
    with bind_correlation_id(f"chain-{uuid.uuid4().hex[:8]}") as chain:
        guarded.charge_then_child.delay(str(tmp_path / "sink"), 1)

    def chain_listed() -> bool:
        page.goto(f"{base}/jobs/{chain}")
        text = page.inner_text("table")
        listed = "tests.charge_then_child" in text and "tests.charge " in text.replace("\t", " ")
        # runs come through the outbox, dry-run events through the worker's buffer: wait for
        # both charges' interceptions too
        return listed and page.locator("tr.entry-dry_run").count() >= 2

    wait_until(chain_listed, timeout=60, interval=1.0, message="the chain's runs were not listed")
    assert page.locator("tr.entry-run").count() >= 2
    assert page.locator("tr.entry-dry_run").count() >= 2  # both charges intercepted
    shot(page, "05-correlation-id")

    for path in ("/heartbeat", "/governor", "/queues"):
        page.goto(base + path)
        shot(page, "06" + path.replace("/", "-"))
    context.close()

    # without credentials (or with wrong ones): 401 (a request, since a page would prompt)
    anonymous = browser.new_context()
    for path in ("/", "/dead-letters", "/api/alerts"):
        assert anonymous.request.get(base + path).status == 401
    wrong = browser.new_context(http_credentials={"username": USER, "password": "nope"})
    assert wrong.request.get(base + "/").status == 401
    anonymous.close()
    wrong.close()
    print(f"screenshots in {SCREENSHOTS}")
