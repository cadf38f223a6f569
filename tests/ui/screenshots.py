"""Screenshots of every viewer page for docs/ui.md, taken in Debian's Chromium.

    python -m tests.ui.screenshots docs/img

Fills a fresh file storage with the demo flows, starts ``asyncflow ui`` on
it, starts a slow flow and photographs each page (the running run while it
runs). No request leaves 127.0.0.1 (the same guard as the browser tests).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.ui.browser import ROOT, Guard, launch, viewer

PAGES = [
    ("ui-workflows.png", "/", False),
    ("ui-run-failed.png", "/workflows/orders-sync", True),
    ("ui-task.png", "/workflows/orders-sync/tasks/extract", False),
    ("ui-run-graph.png", "/workflows/catalog-graph", True),
    ("ui-run-waiting.png", "/workflows/refund-approval", False),
    ("ui-run-parallel.png", "/workflows/big-batch", False),
    ("ui-history.png", "/workflows/orders-sync/runs", False),
    ("ui-error.png", "/workflows/no-such-flow", False),
]


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        url = f"file://{store}"
        subprocess.run([sys.executable, "-m", "tests.ui.demo", url], env=env, check=True)
        demo = [sys.executable, "-m", "tests.ui.demo", url, "graph"]
        subprocess.run(demo, env=env, check=True)
        with viewer(url, Path(tmp) / "ui.log", "--actions") as ui, sync_playwright() as pw:
            browser = launch(pw)
            context = browser.new_context(viewport={"width": 1200, "height": 820})
            guard = Guard()
            context.route("**/*", guard.route)
            page = context.new_page()
            for name, path, full in PAGES:
                page.goto(ui.url + path)
                page.screenshot(path=str(out / name), full_page=full)
                print(out / name)
            runner = subprocess.Popen([sys.executable, "-m", "tests.ui.demo", url, "live"], env=env)
            try:
                while not (store / "live-run" / "tasks" / "slow_2.json").exists():
                    time.sleep(0.05)
                page.goto(ui.url + "/workflows/live-run")
                page.screenshot(path=str(out / "ui-run-live.png"))
                print(out / "ui-run-live.png")
            finally:
                runner.wait(timeout=60)
            browser.close()
        if guard.outside:
            raise SystemExit(f"requests left 127.0.0.1: {guard.outside}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img"))
