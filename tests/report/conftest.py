"""Debian's Chromium, driven by Selenium through Debian's chromedriver (``scripts/chromium.sh``
installs both when they are missing)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.services import script

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
#: Headless as root, and no connection attempts of its own (the network here is closed).
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000")


@pytest.fixture(scope="session")
def chromium(tmp_path_factory) -> Iterator[Callable[[], webdriver.Chrome]]:
    """Starts browsers with a fresh profile each, browser console logging on; quits them at the end."""
    script("chromium.sh", "install")
    drivers: list[webdriver.Chrome] = []

    def start() -> webdriver.Chrome:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        driver.quit()


def artifact_dir() -> Path:
    """Where test artifacts are copied for people to look at (ignored by git)."""
    path = Path(__file__).resolve().parents[2] / "out" / "test-artifacts" / "report"
    path.mkdir(parents=True, exist_ok=True)
    return path
