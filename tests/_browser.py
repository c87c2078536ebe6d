"""Headless Debian Chromium through Playwright, for the app and site checks.

Uses the system browser (`make test` installs Debian's chromium), never a
browser downloaded by `playwright install`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("MNIST_CNN_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying to reach
# Google services, which a closed network refuses, noisily.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def require_chromium() -> str:
    if not Path(CHROMIUM).is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; `make test` installs Debian chromium")
        pytest.skip(f"{CHROMIUM} is missing (run `make chromium`)")
    return CHROMIUM


def launch(playwright):
    """A headless Chromium browser."""
    return playwright.chromium.launch(executable_path=require_chromium(), args=CHROMIUM_ARGS,
                                      headless=True)
