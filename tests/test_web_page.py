"""The digit widget in the built book: drawn in with the mouse and with a finger, on the
deployment chapter and on the landing page, served from loopback and opened from disk;
and the convolution chapter's step-through, with the kernels the chapter defines.

Uses the built site in _build/html (MNIST_CNN_SITE_DIR to point elsewhere); when it is
missing or older than the widget's pages and scripts, the session's own build
(_build/test-site, see tests/_browser.py).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from mnist_cnn.numerics import assert_close
from mnist_cnn.web import WEIGHTS_JS, default_out_dir

from tests._browser import build_book, serve
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
WIDGET = REPO / "book" / "_static" / "digit_widget"
SOURCES = [REPO / f"{p}.md" for p in [*PAGES, "book/convolution"]] + sorted(
    p for p in WIDGET.iterdir() if p.suffix in (".js", ".css"))


def _stale(site: Path) -> bool:
    built = [site / f"{p}.html" for p in [*PAGES, "book/convolution"]] + [
        site / "_static" / "digit_widget" / WEIGHTS_JS]
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
        site = build_book(REPO)         # the session's own build (tests/_browser.py)
    return site


@pytest.fixture(scope="module")
def base_url(site_dir):
    with serve(site_dir) as url:
        yield url


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
    assert got == digit and len(probs) == 10
    assert_close(sum(probs), 1.0, "page widget: probabilities sum to 1 (float64 softmax)")
    assert page.locator(f"{ROOT} .dw-digit").inner_text() == str(digit)
    page.get_by_role("button", name="Clear").click()
    assert wait_state(page, "ready") == "ready"
    assert widget_result(page) == (None, None)


MOUSE = {"viewport": {"width": 1280, "height": 900}}
FINGER = {"viewport": {"width": 412, "height": 860}, "has_touch": True, "is_mobile": True}


@pytest.mark.parametrize(("name", "draw", "digit", "device"), [
    *[(name, draw_mouse, 7, MOUSE) for name in PAGES],
    ("book/deployment", draw_touch, 4, FINGER),
], ids=["mouse-deployment", "mouse-index", "finger-deployment"])
def test_draw_then_clear(browser, base_url, name, draw, digit, device):
    page, errors, requests = open_page(browser, f"{base_url}{name}.html", **device)
    try:
        _check_draw_and_clear(page, draw, digit)
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


def test_the_convolution_chapter_steps_through_its_own_kernels(browser, base_url):
    """The chapter's code cell hands its four kernels to the step-through: they are
    the ones offered, and a digit drawn there is convolved."""
    step = '[data-testid="conv-stepthrough"]'
    page, errors, requests = open_page(browser, f"{base_url}book/convolution.html", **MOUSE)
    try:
        page.locator(step).scroll_into_view_if_needed()
        assert wait_state(page, "ready", "error", root=step) == "ready", page.inner_text(step)
        options = page.locator(f"{step} select option").all_inner_texts()
        assert options == ["vertical edge", "horizontal edge", "blur", "outline"]
        draw_mouse(page, stroke_points(7, 60, 45, 180), root=step)
        assert wait_state(page, "drawn", root=step) == "drawn"
        assert math.isfinite(float(page.get_attribute(step, "data-sum")))
        assert errors == []
        assert [r for r in requests if not r.startswith(base_url)] == []
    finally:
        page.context.close()
