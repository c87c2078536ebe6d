"""Drive the canvas app in a real browser: start it, open it, draw, read the answer.

Used by the screenshot script beside it (``app/screenshot.py``), the browser tests and
the benchmarks (``benchmarks/``): headless Chromium, Debian's ``/usr/bin/chromium``
through Playwright (never a browser downloaded by ``playwright install``).

- :func:`launch_browser`: the browser, with flags for a closed network;
- :class:`AppServer`: ``streamlit run app/streamlit_app.py`` on a free loopback port;
- :func:`open_app`, :func:`draw_strokes` (the one pointer-drawing helper: mouse or
  finger, on the app's canvas or any 280×280 canvas), :func:`reset_canvas`;
- :func:`wait_for_prediction`, :func:`wait_for_full_result`: wait until the page
  presents an answer as current (:data:`ANSWER_STATE_JS`, built from the app's DOM
  contract in :mod:`app.page_assets`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mnist_cnn.canvas import CANVAS as CANVAS_PX  # the canvas in its own pixels

from app.page_assets import fill

CHROMIUM = os.environ.get("MNIST_CNN_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying to reach
# Google services, which a closed network refuses, noisily.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
APP_DIR = Path(__file__).resolve().parent
REPO = APP_DIR.parent
APP_SCRIPT = APP_DIR / "streamlit_app.py"
CANVAS = "canvas.upper-canvas"
METRIC_VALUE = '[data-testid="stMetricValue"]'
RESET_BUTTON = 'button[title="Reset canvas & history"]'


def launch_browser(playwright):
    if not Path(CHROMIUM).is_file():
        raise FileNotFoundError(f"{CHROMIUM} is missing (install Debian chromium: "
                                "`make chromium`)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                      headless=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """``streamlit run app/streamlit_app.py`` on 127.0.0.1:<free port>, as a context manager.

    Inputs:
    - model: model file for ``$MNIST_CNN_MODEL`` (None: the default).
    - log_path: where the server's output goes (None: discarded).
    - env: more environment variables for the server.
    - script: the app script (another version of the app, to compare).
    """

    def __init__(self, model=None, log_path=None, port=None, env=None, script=APP_SCRIPT):
        self.script = script
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.model = model
        self.log_path = log_path
        self.env = env or {}
        self.proc = None
        self.started = None

    def __enter__(self) -> AppServer:
        env = dict(os.environ, **self.env)
        if self.model is not None:
            env["MNIST_CNN_MODEL"] = str(self.model)
        cmd = [sys.executable, "-m", "streamlit", "run", str(self.script),
               "--server.headless", "true", "--server.address", "127.0.0.1",
               "--server.port", str(self.port), "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none"]
        out = open(self.log_path, "w") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                     cwd=REPO)
        self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited with status {self.proc.returncode}"
                                   + (f"; see {self.log_path}" if self.log_path else ""))
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"the app did not answer on {self.url} within {timeout:.0f} s")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def open_app(page, url: str, timeout_ms: int = 60_000) -> dict:
    """Load the app and wait until the canvas is drawable; returns its bounding box."""
    page.goto(url, timeout=timeout_ms)
    canvas = page.locator(CANVAS)
    canvas.wait_for(state="visible", timeout=timeout_ms)
    return canvas.bounding_box()


def pen_events(box: dict, strokes, *, touch: bool = False, hold: bool = False,
               canvas_px: int = CANVAS_PX):
    """The input events that draw ``strokes`` (lists of (x, y) in canvas pixels, scaled
    to the canvas as displayed, ``box``) as (method, args) calls: on ``page.mouse`` (move,
    down, move..., up per stroke) or, ``touch=True``, on a CDP session (one finger:
    touchStart, touchMove..., touchEnd). ``hold=True`` leaves the pen down at the end of
    the last stroke, for a caller that times the release (``page.mouse.up()``)."""
    sx, sy = box["width"] / canvas_px, box["height"] / canvas_px
    for k, pts in enumerate(strokes):
        xy = [(box["x"] + x * sx, box["y"] + y * sy) for x, y in pts]
        lift = not (hold and k == len(strokes) - 1)
        if touch:
            for kind, p in [("touchStart", xy[0])] + [("touchMove", p) for p in xy[1:]]:
                yield "send", ("Input.dispatchTouchEvent",
                               {"type": kind, "touchPoints": [{"x": p[0], "y": p[1]}]})
            if lift:
                yield "send", ("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        else:
            yield "move", xy[0]
            yield "down", ()
            for p in xy[1:]:
                yield "move", p
            if lift:
                yield "up", ()


def draw_strokes(page, box: dict, strokes, *, touch: bool = False, hold: bool = False) -> None:
    """Draw ``strokes`` on the canvas at ``box`` (see :func:`pen_events`) with the mouse,
    or with a finger (``touch=True``: the page's context needs ``has_touch``), as fast as
    the browser takes the events. (An asyncio page: await each of :func:`pen_events`.)"""
    target = page.context.new_cdp_session(page) if touch else page.mouse
    try:
        for method, args in pen_events(box, strokes, touch=touch, hold=hold):
            getattr(target, method)(*args)
    finally:
        if touch:
            target.detach()


# What the page presents as the answer: the Prediction metric's text (None: none shown),
# whether it is marked as out of date - the page is pending (the app's page script
# set <html $pending>) or Streamlit has marked the metric stale (a rerun is under way);
# the app dims both at once - and how many strokes the drawing it read had, as the
# server saw them (the mark that starts the answer area; null without one).
ANSWER_STATE_JS = fill("""() => {
  const m = document.querySelector('[data-testid="stMetricValue"]');
  const pending = document.documentElement.hasAttribute("$pending");
  if (!m) return {value: null, marked: pending, strokes: null, opacity: null};
  const area = m.closest(".st-key-$answer_key");
  const n = area && area.querySelector("[$strokes]");
  let opacity = 1;  // as drawn: the product of the opacities up the tree
  for (let e = m; e && e.nodeType === 1; e = e.parentElement) {
    opacity *= Number(getComputedStyle(e).opacity);
  }
  return {value: m.innerText.trim(), marked: pending || !!m.closest('[data-stale="true"]'),
          strokes: n ? Number(n.getAttribute("$strokes")) : null,
          opacity: Math.round(opacity * 100) / 100};
}""")

# True once an unmarked answer is shown, no rerun is under way (nothing stale in the
# app's main area) and the answer has stayed the same for `ms` milliseconds.
_SETTLED_JS = """(ms) => {
  const s = (STATE)();
  const busy = !!document.querySelector('.stMain [data-stale="true"]');
  const key = JSON.stringify(s) + busy;
  const w = window.__settle || (window.__settle = {key: null, since: 0});
  if (key !== w.key) { w.key = key; w.since = performance.now(); }
  return s.value !== null && !s.marked && !busy && performance.now() - w.since >= ms;
}""".replace("STATE", ANSWER_STATE_JS)


# What the page looked like when no settled answer came: the answer, the page script's
# own state (app/page.js) and the answer area's mark, and what Streamlit holds as stale.
_DIAGNOSIS_JS = fill("""() => {
  const d = window.__digitPage || {};
  const area = document.querySelector(".st-key-$answer_key");
  const mark = area && area.querySelector("[$run]");
  return {answer: (STATE)(),
          script: {count: d.count, waiting: d.waiting, before: d.before, pen: d.pen},
          mark: mark && {run: mark.getAttribute("$run"), strokes: mark.getAttribute("$strokes")},
          stale: [...document.querySelectorAll('.stMain [data-stale="true"]')]
            .map((e) => e.getAttribute("data-testid") || e.className).slice(0, 10)};
}""".replace("STATE", ANSWER_STATE_JS))


def wait_for_prediction(page, timeout_ms: int = 60_000, steady_ms: int = 300) -> str:
    """Wait until the page shows an answer as current (not marked as updating) that
    stays put for ``steady_ms``, and return it. If none comes within ``timeout_ms``,
    AssertionError says what the page showed instead."""
    try:
        page.wait_for_function(_SETTLED_JS, arg=steady_ms, timeout=timeout_ms, polling=50)
    except Exception as exc:  # Playwright's TimeoutError (the driver imports no Playwright)
        if type(exc).__name__ != "TimeoutError":
            raise
        raise AssertionError(f"no settled answer within {timeout_ms / 1000:.0f} s; the page: "
                             f"{page.evaluate(_DIAGNOSIS_JS)}") from exc
    return page.evaluate(ANSWER_STATE_JS)["value"]


def wait_for_full_result(page, timeout_ms: int = 30_000) -> None:
    """Wait until the whole result (prediction, probabilities chart) is drawn and the
    app has finished its run - for screenshots."""
    wait_for_prediction(page, timeout_ms)
    page.locator(".digit-probs").first.wait_for(state="visible", timeout=timeout_ms)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached",
                                                            timeout=timeout_ms)


_CLEARED_JS = fill("""() => !document.querySelector('[data-testid="stMetricValue"]')
  && !document.documentElement.hasAttribute("$pending")""")


def reset_canvas(page, timeout_ms: int = 30_000) -> None:
    """Press the toolbar's "Reset canvas & history" and wait until the page shows no
    answer and is not pending."""
    page.locator(RESET_BUTTON).click()
    page.wait_for_function(_CLEARED_JS, timeout=timeout_ms)
