"""The canvas answers without ever presenting an answer for another drawing as current,
with the mouse on a desktop and with a finger on a phone (Debian Chromium + Playwright).

The page is sampled every 50 ms and on every change (benchmarks.browser's answer log):
what the Prediction metric shows, and whether it is marked as out of date (dimmed,
"Updating…"). How fast the answer comes is measured by ``python -m benchmarks.browser``;
these tests check only what must hold however fast the machine is.
"""

from __future__ import annotations

import pytest

from app.browser_driver import CANVAS, METRIC_VALUE, AppServer, open_app, reset_canvas
from benchmarks.browser import MULTI_STROKE, draw_and_watch, split_strokes
from tests._browser import require_chromium
from tests._helpers_app import committed_or_small_model

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_chromium()
    model = committed_or_small_model(tmp_path_factory.getbasetemp())
    with AppServer(model=model, log_path=tmp_path_factory.getbasetemp() / "canvas.log") as srv:
        yield srv


def _check_no_stale_answer(res: dict, strokes: int) -> None:
    log = res["log"]
    ups = [r["t"] for r in log if r["why"] == "pointerup"]
    assert len(ups) == strokes
    after = [r for r in log if "value" in r and r["t"] > ups[-1]]
    assert after, "the page was never sampled after the last stroke"
    # Every value presented as current after the last stroke is the final answer,
    # for the whole drawing (the app says which drawing it read: its stroke count).
    current = [(r["value"], r["strokes"]) for r in after
               if r["value"] is not None and not r["marked"]]
    assert current, "the final answer was never shown as current"
    assert set(current) == {(res["final"], strokes)}, current
    assert res["stale_after_last_up"] == 0 and res["unmarked_while_drawing"] == 0, res
    # "Marked" is visible: an answer marked as out of date is drawn dimmed.
    dimmed = {r["opacity"] for r in log if r.get("marked") and r.get("value") is not None}
    assert all(o < 0.5 for o in dimmed), dimmed
    assert all(r["opacity"] == 1 for r in after if r["value"] is not None and not r["marked"])


@pytest.mark.parametrize("strokes", [4, 6])
def test_multi_stroke_digit_drawn_quickly_never_shows_a_stale_answer(server, browser,
                                                                     strokes):
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    try:
        box = open_app(page, server.url)
        digit, left, top, size = MULTI_STROKE[strokes]
        for _ in range(2):  # a fresh canvas, then one that had an answer before
            if page.locator(METRIC_VALUE).count():
                reset_canvas(page)
            res = draw_and_watch(page, box, split_strokes(digit, left, top, size, strokes))
            _check_no_stale_answer(res, strokes)
            assert res["final"] == str(digit)
    finally:
        page.close()


def test_phone_canvas_fits_a_finger_draws_and_the_answer_is_in_view(server, browser):
    context = browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True,
                                  device_scale_factor=3)
    try:
        page = context.new_page()
        box = open_app(page, server.url)
        # The canvas fits the screen, with nothing scrolled.
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        assert box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"]
        page.evaluate("() => { window.__scrolled = 0; "
                      "addEventListener('scroll', () => window.__scrolled++); }")
        digit, left, top, size = MULTI_STROKE[4]
        res = draw_and_watch(page, box, split_strokes(digit, left, top, size, 4), touch=True)
        # The finger drew (the app read all its strokes), the page did not move.
        _check_no_stale_answer(res, 4)
        assert res["final"] == str(digit)
        assert page.evaluate("() => [window.scrollY, window.__scrolled]") == [0, 0]
        # The answer is on screen right after drawing, without scrolling.
        answer = page.locator(METRIC_VALUE).bounding_box()
        assert answer["y"] >= 0 and answer["y"] + answer["height"] <= PHONE["height"]
        assert page.locator(CANVAS).bounding_box() == box
    finally:
        context.close()
