"""The page's pending mark (app/page.js) in a real browser, against a server that is as
slow as the test wants: the app's test hook MNIST_CNN_APP_TEST_HOLD holds every run,
once its answer is on the page, for as long as the file it names exists. A change of
the drawing made meanwhile waits behind the held run, with the previous answer on
screen, complete: it stays marked as out of date until the answer for the drawing on
screen arrives; and the page is never left marked.

Each check waits for a condition in the page (an attribute, an element, an answer that
stays put), never for a time. "However long" is tested without waiting: the page's clock
is Playwright's, and jumps a minute ahead (the script this replaced gave up after 3 s
or 10 s and showed the stale answer as current).
"""

from __future__ import annotations

import re

import pytest

from app.browser_driver import (
    ANSWER_STATE_JS,
    CANVAS,
    AppServer,
    draw_strokes,
    open_app,
    wait_for_prediction,
)
from app.page_assets import fill
from tests._browser import require_chromium
from tests._helpers_app import committed_or_small_model, stroke_points

pytestmark = pytest.mark.browser

HOLD_ENV = "MNIST_CNN_APP_TEST_HOLD"  # app/streamlit_app.py's test hook
BAR = [[(40, 250), (140, 250), (240, 250)]]  # one stroke more: a line across the bottom
NOT_PENDING_JS = fill('() => !document.documentElement.hasAttribute("$pending")')
# The answer area's mark (run token, stroke count) and whether the page is pending.
MARK_JS = fill("""() => {
  const m = document.querySelector(".st-key-$answer_key [$run]");
  return {run: m && m.getAttribute("$run"), strokes: m && m.getAttribute("$strokes"),
          pending: document.documentElement.hasAttribute("$pending")};
}""")
# True once the page shows, unmarked, a complete answer (mark and what follows it not
# stale) for a drawing of n strokes.
ANSWERED_JS = fill("""(n) => {
  const area = document.querySelector(".st-key-$answer_key");
  const mark = area && area.querySelector("[$strokes='" + n + "']");
  const lead = area && area.querySelector('[data-testid="stMetric"], [data-testid="stAlert"]');
  const stale = (e) => !!e.closest('[data-stale="true"]');
  return !!(mark && lead && !stale(mark) && !stale(lead))
    && !document.documentElement.hasAttribute("$pending");
}""")
# Counts every time the page is marked pending from now on.
COUNT_MARKS_JS = fill("""() => {
  window.__marks = 0;
  new MutationObserver(() => {
    if (document.documentElement.hasAttribute("$pending")) window.__marks++;
  }).observe(document.documentElement, {attributes: true, attributeFilter: ["$pending"]});
}""")


@pytest.fixture(scope="module")
def hold(tmp_path_factory):
    return tmp_path_factory.mktemp("hold") / "hold"


@pytest.fixture(scope="module")
def server(hold, tmp_path_factory):
    require_chromium()
    model = committed_or_small_model(tmp_path_factory.getbasetemp())
    with AppServer(model=model, env={HOLD_ENV: str(hold)},
                   log_path=tmp_path_factory.getbasetemp() / "pending.log") as srv:
        yield srv


@pytest.fixture
def page(browser, server, hold):
    hold.unlink(missing_ok=True)
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    page.clock.install()  # the page's clock: real time, until the test moves it on
    page.box = open_app(page, server.url)
    yield page
    hold.unlink(missing_ok=True)  # (a failed test may leave a run held)
    page.close()


def _behind_a_held_run(page, hold, first, then, strokes: int) -> dict:
    """Hold the server's runs; ``first()`` (its run answers, then is held: the answer
    for ``strokes`` strokes shows as current); ``then()`` (a change that waits behind
    it). Checks that the page stays marked, now and a minute later, showing the same
    stale answer; returns what it shows."""
    hold.touch()
    first()
    page.wait_for_function(ANSWERED_JS, arg=strokes)
    then()
    shown = page.evaluate(ANSWER_STATE_JS)
    assert page.evaluate(MARK_JS)["pending"] and shown["marked"], shown
    page.clock.fast_forward(60_000)  # far past the old script's 3 s and 10 s
    assert page.evaluate(ANSWER_STATE_JS) == shown
    assert page.evaluate(MARK_JS)["pending"]
    if shown["value"] is not None:
        assert shown["opacity"] < 0.5, shown  # dimmed
    return shown


def _released(page, hold, strokes: int) -> str:
    """Let the held run end; wait for the answer for ``strokes`` strokes to show as
    current; return it."""
    hold.unlink()
    page.wait_for_function(ANSWERED_JS, arg=strokes)
    value = wait_for_prediction(page)
    state = page.evaluate(ANSWER_STATE_JS)
    assert state["strokes"] == strokes and not state["marked"] and state["opacity"] == 1, state
    return value


def _click(page, title: str):
    return lambda: page.locator(f'button[title="{title}"]').click()


def test_a_slow_answer_stays_marked_until_it_arrives(page, hold):
    shown = _behind_a_held_run(
        page, hold, lambda: draw_strokes(page, page.box, stroke_points(7, 40, 30, 200)),
        lambda: draw_strokes(page, page.box, BAR), 1)
    assert shown["value"] == "7" and shown["strokes"] == 1, shown
    _released(page, hold, 2)


def test_undo_redo_and_reset_wait_for_their_answers(page, hold):
    draw_strokes(page, page.box, stroke_points(1, 110, 30, 200) + BAR)
    wait_for_prediction(page)
    assert page.evaluate(MARK_JS)["strokes"] == "2"
    _behind_a_held_run(page, hold, _click(page, "Undo"), _click(page, "Redo"), 1)
    _released(page, hold, 2)
    # Reset: the answer for an empty canvas is the prompt, and it ends the wait too.
    _behind_a_held_run(page, hold, _click(page, "Undo"), _click(page, "Reset canvas & history"),
                       1)
    hold.unlink()
    page.get_by_text("Draw a digit (0–9) on the canvas").wait_for()
    page.wait_for_function(NOT_PENDING_JS)
    assert page.evaluate(MARK_JS)["strokes"] == "0"
    # Reset on an empty canvas sends it again: the page waits for that answer, and it
    # comes.
    reset = _click(page, "Reset canvas & history")
    _behind_a_held_run(page, hold, reset, reset, 0)
    hold.unlink()
    page.wait_for_function(ANSWERED_JS, arg=0)


def test_leaving_the_canvas_for_an_upload_ends_the_wait(page, hold):
    _behind_a_held_run(
        page, hold, lambda: draw_strokes(page, page.box, stroke_points(7, 40, 30, 200)),
        lambda: draw_strokes(page, page.box, BAR), 1)
    page.get_by_text("Upload", exact=True).click()  # waits behind the held run too
    assert page.evaluate(MARK_JS)["pending"]
    hold.unlink()
    page.locator(CANVAS).wait_for(state="detached")
    page.locator('input[type="file"]').wait_for(state="attached")
    page.wait_for_function(NOT_PENDING_JS)
    mark = page.evaluate(MARK_JS)
    assert mark["run"] and mark["strokes"] is None, mark  # an upload's mark: no strokes


def test_other_widgets_rerun_without_marking_the_page(page):
    draw_strokes(page, page.box, stroke_points(4, 60, 30, 200))
    first = wait_for_prediction(page)
    run = page.evaluate(MARK_JS)["run"]
    page.evaluate(COUNT_MARKS_JS)
    page.get_by_text("Compare the Keras and NumPy engines").click()
    page.get_by_text(re.compile(r"engines (dis)?agree")).wait_for()
    assert wait_for_prediction(page) == first
    assert page.evaluate(MARK_JS)["run"] != run  # a new run, for the same drawing
    assert page.evaluate("() => window.__marks") == 0
