"""The digit widget in the built book: drawn in with the mouse and with a finger, on the
deployment chapter and on the landing page, served from loopback and opened from disk.

Uses the built site in _build/html (MNIST_CNN_SITE_DIR to point elsewhere); when it is
missing or older than the widget's pages and scripts, builds it the way `make book` does.
"""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from mnist_cnn.web import WEIGHTS_JS, default_out_dir

from tests._browser import launch
from tests._helpers_app import stroke_points
from tests._helpers_web import (
    ROOT,
    draw_mouse,
    draw_touch,
    open_page,
    wait_state,
    widget_result,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
PAGES = ["book/deployment", "book/index"]
SOURCES = [REPO / f"{p}.md" for p in PAGES] + sorted(
    (REPO / "book" / "_static" / "digit_widget").glob("*.js"))


def _stale(site: Path) -> bool:
    built = [site / f"{p}.html" for p in PAGES] + [site / "_static" / "digit_widget" / WEIGHTS_JS]
    if not all(p.is_file() for p in built):
        return True
    oldest = min(p.stat().st_mtime for p in built)
    return any(s.stat().st_mtime > oldest for s in SOURCES)


@pytest.fixture(scope="module")
def site_dir() -> Path:
    prebuilt = os.environ.get("MNIST_CNN_SITE_DIR")
    if prebuilt:
        return Path(prebuilt)
    site = REPO / "_build" / "html"
    if _stale(site):
        assert (default_out_dir() / WEIGHTS_JS).is_file(), "run `make web-export` first"
        jb = Path(sys.executable).with_name("jupyter-book")
        env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
        proc = subprocess.run([str(jb), "build", ".", "-n", "-W", "--keep-going"], cwd=REPO,
                              capture_output=True, text=True, timeout=3600, env=env)
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
        assert proc.returncode == 0, f"jupyter-book build failed:\n{tail}"
    return site


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def base_url(site_dir):
    handler = functools.partial(_QuietHandler, directory=str(site_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch(pw)
        yield b
        b.close()


def _check_draw_and_clear(page, draw, digit: int):
    page.locator(ROOT).scroll_into_view_if_needed()
    assert wait_state(page, "ready", "error") == "ready", page.inner_text(ROOT)
    # exactly one widget, and its first canvas is the drawing surface
    assert page.locator(ROOT).count() == 1
    assert "dw-draw" in page.locator(f"{ROOT} canvas").first.get_attribute("class")
    assert page.locator(f"{ROOT} canvas").first.evaluate(
        "c => getComputedStyle(c).touchAction") == "none"
    scroll = page.evaluate("() => window.scrollY")
    draw(page, stroke_points(digit, 60, 45, 180))
    assert page.evaluate("() => window.scrollY") == scroll  # the strokes did not scroll
    assert wait_state(page, "predicted", "too-small", "empty") == "predicted"
    got, probs = widget_result(page)
    assert got == digit and len(probs) == 10 and abs(sum(probs) - 1) < 1e-4
    assert page.locator(f"{ROOT} .dw-digit").inner_text() == str(digit)
    page.get_by_role("button", name="Clear").click()
    assert wait_state(page, "ready") == "ready"
    assert widget_result(page) == (None, None)


@pytest.mark.parametrize("name", PAGES)
def test_draw_with_the_mouse_then_clear(browser, base_url, name):
    page, errors, requests = open_page(browser, f"{base_url}{name}.html",
                                       viewport={"width": 1280, "height": 900})
    try:
        _check_draw_and_clear(page, draw_mouse, 7)
        assert errors == []
        assert [r for r in requests if not r.startswith(base_url)] == []
    finally:
        page.context.close()


def test_draw_with_a_finger(browser, base_url):
    page, errors, requests = open_page(browser, f"{base_url}book/deployment.html",
                                       viewport={"width": 412, "height": 860},
                                       has_touch=True, is_mobile=True)
    try:
        _check_draw_and_clear(page, draw_touch, 4)
        assert errors == []
        assert [r for r in requests if not r.startswith(base_url)] == []
    finally:
        page.context.close()


def test_works_opened_from_disk(browser, site_dir):
    page, _, requests = open_page(browser, (site_dir / "book" / "deployment.html").as_uri())
    try:
        _check_draw_and_clear(page, draw_mouse, 1)
        assert all(r.startswith(("file://", "data:")) for r in requests), requests
    finally:
        page.context.close()
