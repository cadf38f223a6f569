"""The viewer in a real Chromium against a real ``asyncflow ui`` process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ui.browser import CHROMIUM, ROOT, Guard, launch, viewer

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"{CHROMIUM} is missing: apt-get install chromium (.ci/run installs it)",
)
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = launch(playwright)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[tuple[Any, Guard]]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    guard = Guard()
    context.route("**/*", guard.route)
    opened = context.new_page()
    dialogs: list[str] = []
    opened.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    try:
        yield opened, guard
    finally:
        context.close()
    assert guard.seen, "the page made no request at all"
    assert guard.outside == [], f"requests left 127.0.0.1: {guard.outside}"
    assert dialogs == [], f"a script ran in the page: {dialogs}"


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    """Storage filled by real flows, in a child process (Playwright owns this one's loop)."""
    store = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "tests.ui.demo", f"file://{store}"], env=env, check=True)
    return store


def test_list_open_failed_run_and_see_its_error(
    filled: Path, tmp_path: Path, page: tuple[Any, Guard]
) -> None:
    tab, guard = page
    with viewer(f"file://{filled}", tmp_path / "ui.log") as ui:
        tab.goto(ui.url + "/")
        rows = tab.locator("table.list tbody tr")
        assert rows.count() == 5
        assert "1" in tab.locator(".counts a", has_text="failed").inner_text()

        tab.locator(".counts a", has_text="failed").click()
        tab.wait_for_url("**/?status=failed")
        assert rows.count() == 1
        tab.get_by_role("link", name="orders-sync").click()
        tab.wait_for_url("**/workflows/orders-sync")

        assert tab.locator("h1 .badge").inner_text() == "failed"
        message = tab.locator(".errors .message").inner_text()
        assert "warehouse refused the connection <script>alert(1)</script>" in message
        failed = tab.locator('svg.graph g.node[data-status="failed"] rect')
        assert failed.get_attribute("fill") == "#f44336"
        done = tab.locator('svg.graph g.node[data-status="completed"] rect').first
        assert done.get_attribute("fill") == "#4caf50"
        assert tab.locator("svg.gantt g.bar").count() == 4

        tab.locator(".errors a", has_text="load").click()
        tab.wait_for_url("**/tasks/load")
        assert "ConnectionError" in tab.locator(".errors").inner_text()

        tab.goto(ui.url + "/workflows/orders-sync/tasks/extract")
        assert "row <0>" in tab.locator("pre.output").inner_text()
        tab.goto(ui.url + "/workflows/no-such-flow")
        assert "Unknown workflow" in tab.locator("h1").inner_text()
    assert all(url.startswith((ui.url, "data:")) for url in guard.seen)


def test_a_live_run_updates_without_a_reload(tmp_path: Path, page: tuple[Any, Guard]) -> None:
    tab, guard = page
    store = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runner = subprocess.Popen(
        [sys.executable, "-m", "tests.ui.demo", f"file://{store}", "live"], env=env
    )
    try:
        with viewer(f"file://{store}", tmp_path / "ui.log") as ui:
            deadline = time.monotonic() + 20
            while not (store / "live-run" / "run.json").exists():
                assert time.monotonic() < deadline, "the live flow never started"
                time.sleep(0.05)
            navigations: list[str] = []
            tab.on("framenavigated", lambda frame: navigations.append(frame.url))
            tab.goto(ui.url + "/workflows/live-run")
            assert tab.locator("h1 .badge").inner_text() == "running"
            first = tab.locator('tr[data-status="completed"]').count()
            assert first < 6
            done = tab.locator('tr[data-status="completed"]')
            sync_api.expect(done).not_to_have_count(first, timeout=15000)
            sync_api.expect(tab.locator("h1 .badge")).to_have_text("completed", timeout=15000)
            assert tab.locator('tr[data-status="completed"]').count() == 6
            assert tab.locator("#live").get_attribute("data-live") == "0"
            assert navigations == [ui.url + "/workflows/live-run"], "the page reloaded"
    finally:
        runner.wait(timeout=30)
    assert runner.returncode == 0
    polls = [url for url in guard.seen if url.endswith("/workflows/live-run")]
    assert len(polls) > 2, "the page never polled"


def test_actions_need_the_csrf_value_and_the_token(
    filled: Path, tmp_path: Path, page: tuple[Any, Guard]
) -> None:
    tab, _ = page
    with viewer(f"file://{filled}", tmp_path / "ui.log", "--actions", "--token", "s3cret") as ui:
        tab.goto(ui.url + "/workflows/orders-sync")
        assert tab.locator("header .mode").inner_text() == "actions locked"
        assert tab.get_by_role("button", name="reset from here").count() == 0
        forged = tab.request.post(
            ui.url + "/workflows/orders-sync/reset",
            form={"key": "load", "csrf": "forged" * 8, "token": "s3cret"},
        )
        assert forged.status == 403
        assert "CSRF check failed" in forged.text()

        tab.get_by_label("access token").fill("wrong")
        tab.get_by_role("button", name="Unlock actions").click()
        assert "Wrong token" in tab.locator("h1").inner_text()
        tab.goto(ui.url + "/workflows/orders-sync")
        tab.get_by_label("access token").fill("s3cret")
        tab.get_by_role("button", name="Unlock actions").click()
        tab.wait_for_url("**/workflows/orders-sync")
        assert tab.locator("header .mode").inner_text() == "actions on"
        assert tab.get_by_role("button", name="reset from here").count() == 4


def test_approving_a_waiting_run_in_the_browser(
    filled: Path, tmp_path: Path, page: tuple[Any, Guard]
) -> None:
    tab, _ = page
    with viewer(f"file://{filled}", tmp_path / "ui.log", "--actions") as ui:
        tab.goto(ui.url + "/?status=waiting")
        tab.get_by_role("link", name="refund-approval").click()
        assert tab.locator("h1 .badge").inner_text() == "waiting"
        assert "for signal approve" in tab.locator(".waiting").inner_text()
        tab.get_by_role("button", name="Approve: send approve").click()
        sync_api.expect(tab.locator(".notice")).to_have_text("signal approve sent")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run(
            [sys.executable, "-m", "tests.ui.demo", f"file://{filled}", "approval"],
            env=env,
            check=True,
        )
        sync_api.expect(tab.locator("h1 .badge")).to_have_text("completed", timeout=15000)
        assert tab.locator('tr[data-status="waiting"]').count() == 0
