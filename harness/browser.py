"""MLflow's pages in a real browser: Debian's Chromium driven by Playwright (no browser download).

What a person does on their first visit: open the experiment's Traces tab,
open goose's trace, look at its spans. Screenshots go to build/screenshots/,
kept by CI as test artifacts.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from harness.compose_file import REPO

CHROMIUM = "/usr/bin/chromium"
# As root without a sandbox; and nothing that calls out of a machine without a route out.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = REPO / "build" / "screenshots"
TIMEOUT_MS = 60_000


def trust_ca(home: Path, ca_file: Path) -> None:
    """Chromium on Linux trusts the CAs of $HOME/.pki/nssdb: add the team's, as a teammate would."""
    database = home / ".pki" / "nssdb"
    database.mkdir(parents=True, exist_ok=True)
    subprocess.run(["certutil", "-d", f"sql:{database}", "-N", "--empty-password"], check=True)
    subprocess.run(["certutil", "-d", f"sql:{database}", "-A", "-t", "C,,", "-n", "goose-mlflow team CA",
                    "-i", str(ca_file)], check=True)


@contextmanager
def chromium(home: Path) -> Iterator[Browser]:
    """Headless Chromium with `home` as its HOME (its certificate store, its profile)."""
    if not Path(CHROMIUM).is_file():
        if os.environ.get("CI"):
            pytest.fail(f"the browser tests must run in CI: {CHROMIUM} is missing (.ci/run installs it)")
        pytest.skip(f"no {CHROMIUM} (apt-get install chromium libnss3-tools)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                                             env={**os.environ, "HOME": str(home)})
        try:
            yield browser
        finally:
            browser.close()


def open_goose_trace(page: Page, url: str, experiment_id: str, session_id: str) -> None:
    """The Traces tab, then the session's trace, as a person clicks through it."""
    page.goto(f"{url}/#/experiments/{experiment_id}/traces", timeout=TIMEOUT_MS)
    got_it = page.get_by_role("button", name="Got it")  # a first-visit tip over the table
    got_it.wait_for(timeout=TIMEOUT_MS)
    got_it.click()
    page.get_by_text(session_id, exact=True).first.click(timeout=TIMEOUT_MS)
    page.get_by_text("View full trace").first.click(timeout=TIMEOUT_MS)
    page.get_by_text("chat gpt-4o", exact=True).first.click(timeout=TIMEOUT_MS)


def span_row(page: Page, name: str) -> str:
    """A span's row in the trace's span tree: its name, duration, and for a model call tokens and cost."""
    # MLflow 3.17's tree: the name sits two elements below the row that also holds the figures.
    return page.get_by_text(name, exact=True).first.locator("xpath=ancestor::*[3]").inner_text(timeout=TIMEOUT_MS)


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
