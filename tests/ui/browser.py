"""A real ``asyncflow ui`` process and Debian's Chromium driven by Playwright.

Playwright's own browser download is unreachable here (and never wanted):
the browser is ``/usr/bin/chromium`` (``apt-get install chromium``, which
``.ci/run`` does). Every request the page makes is routed through a handler
that lets only ``127.0.0.1`` through and records the rest, so a test can
assert that nothing left the machine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).parent.parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Viewer:
    """``python -m asyncflow ui`` on a free loopback port, until closed."""

    def __init__(self, storage_url: str, log: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("ab")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "asyncflow",
                "ui",
                "--storage",
                storage_url,
                "--port",
                str(self.port),
                *extra,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"asyncflow ui exited with {self.proc.returncode}: see {log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("asyncflow ui did not start listening") from None
                time.sleep(0.05)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


@contextmanager
def viewer(storage_url: str, log: Path, *extra: str) -> Iterator[Viewer]:
    running = Viewer(storage_url, log, *extra)
    try:
        yield running
    finally:
        running.close()


class Guard:
    """Records every request of a browser context; aborts any that would leave 127.0.0.1."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.outside: list[str] = []

    def route(self, route: Any) -> None:
        url = route.request.url
        self.seen.append(url)
        scheme = urlsplit(url).scheme
        if scheme == "data" or (scheme == "http" and urlsplit(url).hostname == "127.0.0.1"):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
