"""Headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by Selenium, sending
the dashboard's basic-auth header on every request. Without them the browser tests skip, and
fail under CI=true (``missing_tool``)."""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from tests.tools import missing_tool

T = TypeVar("T")
INSTALL = "apt-get install -y chromium chromium-driver"
SCREENSHOTS_ENV = "CLOUDQ_DASHBOARD_SCREENSHOTS"
"""Set to a directory (docs/dashboard) to save a screenshot of each page there."""


@contextmanager
def chromium(user: str, password: str) -> Iterator[Any]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if browser is None or driver_path is None:
        missing_tool(f"headless Chromium and its driver are not installed: {INSTALL}")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        missing_tool(f"selenium cannot be imported ({exc}): it is a dev dependency")
    options = Options()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1360,900",
        "--no-first-run",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd(
            "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}}
        )
        yield driver
    finally:
        driver.quit()


def until(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``probe`` (which may raise while a fragment is being swapped) until truthy."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except Exception as exc:  # stale or missing elements while htmx swaps
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last})")


def screenshot(driver: Any, name: str) -> None:
    folder = os.environ.get(SCREENSHOTS_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))


def script_errors(driver: Any) -> list[str]:
    """Policy violations and script errors the console logged (a page's own 404, such as an
    unknown task's, is not one)."""
    return [
        e["message"]
        for e in driver.get_log("browser")
        if "Content Security Policy" in e["message"]
        or (e["level"] == "SEVERE" and "Failed to load resource" not in e["message"])
    ]
