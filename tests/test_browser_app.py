"""The canvas app in a real browser (Debian Chromium + Playwright): draw with the
mouse, read the Prediction metric, reset, upload, and serve another model file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.browser_driver import (
    METRIC_VALUE,
    AppServer,
    draw_strokes,
    open_app,
    reset_canvas,
    wait_for_full_result,
    wait_for_prediction,
)
from tests._browser import require_chromium
from tests._helpers_app import (
    committed_or_small_model,
    render_digit,
    stroke_points,
    trained_small_model,
)

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return committed_or_small_model(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def server(model_path, tmp_path_factory):
    require_chromium()
    log = tmp_path_factory.getbasetemp() / "app_server.log"
    with AppServer(model=model_path, log_path=log) as srv:
        yield srv


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    page.console_errors = []
    page.on("console",
            lambda m: page.console_errors.append(f"{m.text} {m.location.get('url', '')}")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    yield page
    page.close()


# (digit, left, top, size) in canvas pixels: different places and sizes.
DRAWINGS = [(7, 20, 20, 130), (3, 130, 110, 140), (0, 40, 40, 220), (4, 150, 20, 110)]


def test_draw_digits_with_the_mouse_then_reset(server, page):
    box = open_app(page, server.url)
    assert page.get_by_text("Draw a digit (0–9) on the canvas").is_visible()
    for k, (digit, left, top, size) in enumerate(DRAWINGS):
        if k:
            reset_canvas(page)
        draw_strokes(page, box, stroke_points(digit, left, top, size))
        shown = wait_for_prediction(page)
        page.get_by_text("What the model sees").wait_for()
        assert shown == str(digit), f"drew {digit} at ({left}, {top}) size {size}"
        # Streamlit streams the page: the chart section can follow the metric.
        page.get_by_text("Probabilities").wait_for(state="visible", timeout=30_000)
        if k == 0:
            wait_for_full_result(page)
            shot = REPO / "_build" / "app_screenshot.png"
            shot.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
    reset_canvas(page)
    page.get_by_text("Draw a digit (0–9) on the canvas").wait_for()
    assert page.locator(METRIC_VALUE).count() == 0
    assert page.console_errors == []


def test_upload_a_photo(server, page, tmp_path):
    open_app(page, server.url)
    photo = 255 - render_digit(1, 80, 30, 200, width=22, rgba=False)  # dark ink on paper
    path = tmp_path / "one.png"
    Image.fromarray(photo).save(path)
    page.get_by_text("Upload", exact=True).click()
    page.locator('input[type="file"]').set_input_files(str(path))
    assert wait_for_prediction(page) == "1"
    # A file that is not an image: a clear message, no prediction.
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    page.locator('input[type="file"]').set_input_files(str(bad))
    page.get_by_text("not a supported image").wait_for()
    # The previous prediction is removed when the rerun finishes (stale elements
    # stay on screen while it runs); it must go, not be kept for the bad file.
    page.locator(METRIC_VALUE).wait_for(state="detached", timeout=30_000)
    assert page.console_errors == []


def test_model_from_environment_variable(browser, tmp_path_factory):
    other = tmp_path_factory.mktemp("other") / "other_model.keras"
    trained_small_model(other, filters=(6, 12), seed=1)
    with AppServer(model=other) as srv:
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        box = open_app(page, srv.url)
        assert page.get_by_text("other_model.keras").is_visible()
        draw_strokes(page, box, stroke_points(7, 40, 30, 180))
        assert wait_for_prediction(page) == "7"
        page.close()


def test_missing_model_message_in_browser(browser, tmp_path):
    with AppServer(model=tmp_path / "missing.keras") as srv:
        page = browser.new_page()
        page.goto(srv.url)
        page.get_by_text("No model file").wait_for(timeout=60_000)
        assert page.get_by_text("train-keras").count() >= 1
        assert page.locator("canvas.upper-canvas").count() == 0
        page.close()


def test_screenshot_is_a_real_image():
    shot = REPO / "_build" / "app_screenshot.png"
    if not shot.is_file():
        pytest.skip("the drawing test did not run")
    img = np.asarray(Image.open(io.BytesIO(shot.read_bytes())).convert("L"))
    assert img.shape[0] > 500 and img.shape[1] > 800
    assert img.std() > 10


def test_the_driver_says_what_the_page_showed_when_no_answer_comes(server, page):
    open_app(page, server.url)              # nothing drawn: the prompt, never a prediction
    with pytest.raises(AssertionError, match="no settled answer within 1 s") as failed:
        wait_for_prediction(page, timeout_ms=1_000)
    shown = str(failed.value)
    assert "'value': None" in shown and "'script'" in shown and "'mark'" in shown
