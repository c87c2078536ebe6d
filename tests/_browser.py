"""Headless Debian Chromium through Playwright, for the app and site checks.

The browser, its flags and the launch live in :mod:`benchmarks.browser`
(shared with the benchmarks); this adds what a test does when the browser is
missing: fail in CI (`make test` installs Debian chromium), skip elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.browser import CHROMIUM, launch_browser


def require_chromium() -> str:
    if not Path(CHROMIUM).is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; `make test` installs Debian chromium")
        pytest.skip(f"{CHROMIUM} is missing (run `make chromium`)")
    return CHROMIUM


def launch(playwright):
    """A headless Chromium browser."""
    require_chromium()
    return launch_browser(playwright)
