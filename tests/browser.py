"""Headless Chromium for browser tests: Debian's chromium + chromium-driver (`make browser`).

Selenium is pointed at both binaries explicitly, so Selenium Manager never runs and nothing is
downloaded; SE_OFFLINE is set as well in case a later Selenium consults it anyway.
A missing browser is a failure, never a skip: installing it is the Makefile's job.

    with chromium(tmp_path) as driver:
        driver.get(url)
        rows = wait_for(driver, "table tbody tr")
        screenshot(driver, tmp_path / "page.png")
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1400, 900)
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-extensions",
    "--no-first-run",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
)


def _require_binaries() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(
            f"headless Chromium is not installed ({', '.join(missing)} missing; "
            f"CI={os.environ.get('CI')}): run `make browser`",
            pytrace=False,
        )


@contextmanager
def chromium(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """Start headless Chromium with a fresh profile under tmp_path; always quit it."""
    _require_binaries()
    os.environ.setdefault("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tmp_path / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    options.add_argument(f"--user-data-dir={profile}")
    log = tmp_path / "chromedriver.log"
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(log))
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except WebDriverException as exc:
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"
        pytest.fail(
            f"headless Chromium did not start: {exc.msg}\nchromedriver log:\n{tail}", pytrace=False
        )
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: webdriver.Chrome, css: str, timeout: float = 10.0) -> list[WebElement]:
    """Wait until at least one element matching css is visible; return all matches."""
    try:
        WebDriverWait(driver, timeout).until(
            ec.visibility_of_element_located((By.CSS_SELECTOR, css))
        )
    except TimeoutException:
        pytest.fail(
            f"no visible {css!r} after {timeout}s on {driver.current_url}:\n"
            f"{driver.page_source[:2000]}",
            pytrace=False,
        )
    return driver.find_elements(By.CSS_SELECTOR, css)


def screenshot(driver: webdriver.Chrome, path: Path) -> Path:
    """Save a PNG of the current viewport to path (parents created) and return path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not driver.save_screenshot(str(path)):
        pytest.fail(f"screenshot to {path} failed", pytrace=False)
    return path
