"""Drive the canvas app in a real browser: latency benchmark and helpers.

``python -m benchmarks.browser [--repeats 10] [--model PATH] [--app SCRIPT] [--json]``
(from the repository root; run it on an otherwise idle machine: it measures time)

Starts the app (``streamlit run``) on a free loopback port, opens it in
headless Chromium (Debian's ``/usr/bin/chromium`` through Playwright, never a
browser downloaded by ``playwright install``) and measures

- cold start: process start -> the canvas is on screen and accepts strokes;
- for digits drawn quickly with 1, 2, 4 and 6 strokes (the canvas is reset between
  digits), recording what the page shows as the answer every 50 ms and on every
  change: the time from the last mouse-up to the final answer shown as current
  (median, p95), and how many answers for an unfinished drawing were shown unmarked
  (not dimmed as "Updating…"), after the last stroke and while drawing.

The same helpers (:class:`AppServer`, :func:`open_app`, :func:`draw_digit`,
:func:`reset_canvas`, :func:`wait_for_prediction`, the answer log) drive the
browser tests and the screenshot script.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mnist_cnn.bench.stats import summary
from mnist_cnn.canvas import stroke_points

CHROMIUM = os.environ.get("MNIST_CNN_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying to reach
# Google services, which a closed network refuses, noisily.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
REPO = Path(__file__).resolve().parents[1]
APP_SCRIPT = REPO / "app" / "streamlit_app.py"
CANVAS = "canvas.upper-canvas"
CANVAS_PX = 280  # the app's canvas size in its own pixels
METRIC_VALUE = '[data-testid="stMetricValue"]'
RESET_BUTTON = 'button[title="Reset canvas & history"]'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """``streamlit run app/streamlit_app.py`` on 127.0.0.1:<free port>, as a context manager.

    Inputs:
    - model: model file for ``$MNIST_CNN_MODEL`` (None: the default).
    - log_path: where the server's output goes (None: discarded).
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


def launch_browser(playwright):
    if not Path(CHROMIUM).is_file():
        raise FileNotFoundError(f"{CHROMIUM} is missing (install Debian chromium: "
                                "`make chromium`)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                      headless=True)


def open_app(page, url: str, timeout_ms: int = 60_000) -> dict:
    """Load the app and wait until the canvas is drawable; returns its bounding box."""
    page.goto(url, timeout=timeout_ms)
    canvas = page.locator(CANVAS)
    canvas.wait_for(state="visible", timeout=timeout_ms)
    return canvas.bounding_box()


def draw_digit(page, box: dict, digit: int, left: float, top: float, size: float) -> None:
    """Draw ``digit`` with the mouse inside the canvas square (left, top, size) in
    canvas pixels; the mouse is released at the end of each stroke."""
    for pts in stroke_points(digit, left, top, size):
        x0, y0 = pts[0]
        page.mouse.move(box["x"] + x0, box["y"] + y0)
        page.mouse.down()
        for x, y in pts[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y)
        page.mouse.up()


def reset_canvas(page, timeout_ms: int = 20_000) -> None:
    """Press the toolbar's "Reset canvas & history" and wait for the prediction to go."""
    page.locator(RESET_BUTTON).click()
    page.locator(METRIC_VALUE).wait_for(state="detached", timeout=timeout_ms)


# What the page presents as the answer: the Prediction metric's text (None: none shown),
# whether it is marked as out of date - the page is pending (the app's script set
# <html data-digit-pending> since the pen touched the canvas) or Streamlit has marked
# the metric stale (a rerun is under way); the app dims both at once - and how many
# strokes the drawing it read had, as the server saw them (the app's data-digit-strokes
# beside the answer; null for an app without it).
ANSWER_STATE_JS = """() => {
  const m = document.querySelector('[data-testid="stMetricValue"]');
  const pending = document.documentElement.hasAttribute("data-digit-pending");
  if (!m) return {value: null, marked: pending, strokes: null, opacity: null};
  const c = m.closest('[data-testid="stVerticalBlock"]');
  const n = c && c.querySelector("[data-digit-strokes]");
  let opacity = 1;  // as drawn: the product of the opacities up the tree
  for (let e = m; e && e.nodeType === 1; e = e.parentElement) {
    opacity *= Number(getComputedStyle(e).opacity);
  }
  return {value: m.innerText.trim(), marked: pending || !!m.closest('[data-stale="true"]'),
          strokes: n ? Number(n.dataset.digitStrokes) : null,
          opacity: Math.round(opacity * 100) / 100};
}"""

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


def wait_for_prediction(page, timeout_ms: int = 30_000, steady_ms: int = 300) -> str:
    """Wait until the page shows an answer as current (not marked as updating) that
    stays put for ``steady_ms``, and return it."""
    page.wait_for_function(_SETTLED_JS, arg=steady_ms, timeout=timeout_ms, polling=50)
    return page.evaluate(ANSWER_STATE_JS)["value"]


# Records what the page presents as the answer, every 50 ms and on every change, with
# the times of pointer downs and ups, on the page's own clock (performance.now()).
ANSWER_LOG_JS = """() => {
  if (window.__answerLog) { window.__answerLog.length = 0; return; }
  const log = window.__answerLog = [];
  const state = STATE;
  let last = "";
  const sample = (why) => {
    const s = state(), k = JSON.stringify(s);
    if (why === "tick" || k !== last) { log.push({t: performance.now(), why, ...s}); last = k; }
  };
  setInterval(() => sample("tick"), 50);
  const watch = (el, opts) => new MutationObserver(() => sample("change")).observe(el, opts);
  watch(document.body, {subtree: true, childList: true, characterData: true,
                        attributes: true, attributeFilter: ["data-stale"]});
  watch(document.documentElement, {attributes: true, attributeFilter: ["data-digit-pending"]});
  for (const ev of ["pointerdown", "pointerup"]) {
    document.addEventListener(ev, () => log.push({t: performance.now(), why: ev}), true);
  }
}""".replace("STATE", ANSWER_STATE_JS)


def start_answer_log(page) -> None:
    """Start (or restart) recording the answer the page shows (see ANSWER_LOG_JS)."""
    page.evaluate(ANSWER_LOG_JS)


def answer_log(page) -> list[dict]:
    return page.evaluate("() => window.__answerLog.slice()")


def analyse_answer_log(log: list[dict], final: str, strokes: int | None = None) -> dict:
    """From an answer log of one digit (pointer events + samples), its final answer and
    its number of strokes (an answer is the final one when it shows that value and, if
    the app says which drawing it read, that drawing has all the strokes):

    - latency_s: last pointer up -> the final answer first shown unmarked;
    - stale_after_last_up: answers other than the final one shown unmarked after the
      last pointer up (each distinct showing counted once; target 0);
    - unmarked_while_drawing: answers shown unmarked while the pen was down (each
      showing counted once): the drawing on screen had changed, the answer had not;
    - samples_after_last_up: how many samples were taken after the last up.
    """
    ups = [r["t"] for r in log if r["why"] == "pointerup"]
    last_up = ups[-1]
    down = False
    stale_after, while_drawing, shown_at, prev = 0, 0, None, None
    samples_after = 0
    for r in log:
        if r["why"] == "pointerdown":
            down, prev = True, None
            continue
        if r["why"] == "pointerup":
            down, prev = False, None
            continue
        current = None if r["value"] is None or r["marked"] else (r["value"], r["strokes"])
        is_final = current is not None and current[0] == final and (
            strokes is None or current[1] in (None, strokes))
        after = r["t"] > last_up
        samples_after += after
        if current is not None and current != prev:  # a new showing of an answer
            if after and not is_final:
                stale_after += 1
            elif down:
                while_drawing += 1
        if after and is_final and shown_at is None:
            shown_at = r["t"]
        prev = current
    return {"latency_s": None if shown_at is None else round((shown_at - last_up) / 1000, 3),
            "stale_after_last_up": stale_after, "unmarked_while_drawing": while_drawing,
            "samples_after_last_up": samples_after}


def wait_for_full_result(page, timeout_ms: int = 30_000) -> None:
    """Wait until the whole result (prediction, probabilities chart) is drawn and the
    app has finished its run - for screenshots."""
    wait_for_prediction(page, timeout_ms)
    page.locator(".digit-probs").first.wait_for(state="visible", timeout=timeout_ms)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached",
                                                            timeout=timeout_ms)


# Digits drawn with 1, 2, 4 and 6 strokes: (digit, left, top, size) in canvas pixels.
# A digit of k strokes is its path cut into k pieces, the pen lifted between them: the
# drawings before the last stroke are unfinished digits, often read as another digit.
MULTI_STROKE = {1: (7, 40, 40, 180), 2: (4, 60, 40, 180), 4: (3, 50, 40, 190),
                6: (0, 60, 40, 170)}


def split_strokes(digit: int, left: float, top: float, size: float, k: int):
    """The points of ``digit`` (see :func:`mnist_cnn.canvas.stroke_points`) cut into ``k``
    strokes that join up (each starts where the previous one ended)."""
    pts = [p for stroke in stroke_points(digit, left, top, size) for p in stroke]
    cuts = [round(i * (len(pts) - 1) / k) for i in range(k + 1)]
    return [pts[a:b + 1] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def draw_strokes(page, box: dict, strokes) -> None:
    """Draw the strokes with the mouse, as fast as the browser takes the events."""
    for pts in strokes:
        page.mouse.move(box["x"] + pts[0][0], box["y"] + pts[0][1])
        page.mouse.down()
        for x, y in pts[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y)
        page.mouse.up()


def touch_strokes(cdp, box: dict, strokes) -> None:
    """Draw the strokes with a finger: touch events through a CDP session
    (``context.new_cdp_session(page)`` of a ``has_touch``/``is_mobile`` context).
    Stroke points are in canvas pixels, scaled to the canvas as displayed."""
    sx, sy = box["width"] / CANVAS_PX, box["height"] / CANVAS_PX

    def touch(kind, points):
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [
            {"x": box["x"] + x * sx, "y": box["y"] + y * sy} for x, y in points]})

    for pts in strokes:
        touch("touchStart", pts[:1])
        for p in pts[1:]:
            touch("touchMove", [p])
        touch("touchEnd", [])


def draw_and_watch(page, box: dict, strokes, timeout_ms: int = 60_000, draw=None) -> dict:
    """Draw a digit (several strokes; ``draw(strokes)`` if given, else the mouse) while
    recording what the page shows as the answer; returns :func:`analyse_answer_log`'s
    figures plus ``final`` (the settled answer) and ``log`` (the records)."""
    start_answer_log(page)
    if draw is None:
        draw_strokes(page, box, strokes)
    else:
        draw(strokes)
    final = wait_for_prediction(page, timeout_ms, steady_ms=1000)
    log = answer_log(page)
    return {"final": final, **analyse_answer_log(log, final, len(strokes)), "log": log}


def clear_canvas(page, timeout_ms: int = 30_000) -> None:
    """Reset the canvas and wait until the page has no answer and no pending mark."""
    page.locator(RESET_BUTTON).click()
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stMetricValue\"]') && "
        "!document.documentElement.hasAttribute('data-digit-pending')", timeout=timeout_ms)


def measure(model=None, repeats: int = 5, log_path=None, script=APP_SCRIPT,
            counts=tuple(MULTI_STROKE)) -> dict:
    """Cold start, and for digits of each stroke count: last mouse-up -> final answer,
    and the unmarked answers for unfinished drawings, in a real browser.

    Returns dict: cold_start_s (process start -> canvas drawable) and per stroke count
    ``by_strokes[k]``: latencies_s, median_s, p95_s, stale_after_last_up (total over the
    repeats), unmarked_while_drawing (total), finals (the answers, one per repeat).
    """
    from playwright.sync_api import sync_playwright

    by_strokes = {}
    with sync_playwright() as pw:
        browser = launch_browser(pw)
        try:
            with AppServer(model=model, log_path=log_path, script=script) as server:
                page = browser.new_page(viewport={"width": 1300, "height": 1000})
                box = open_app(page, server.url)
                cold = time.perf_counter() - server.started
                for k in counts:
                    digit, left, top, size = MULTI_STROKE[k]
                    runs = []
                    for _ in range(repeats):
                        if page.locator(METRIC_VALUE).count():
                            clear_canvas(page)
                        runs.append(draw_and_watch(page, box,
                                                   split_strokes(digit, left, top, size, k)))
                    lat = [r["latency_s"] for r in runs if r["latency_s"] is not None]
                    stats = summary(lat, digits=3)
                    by_strokes[k] = {
                        "digit": digit, "latencies_s": lat,
                        "median_s": stats["median"], "p95_s": stats["p95"],
                        "stale_after_last_up": sum(r["stale_after_last_up"] for r in runs),
                        "unmarked_while_drawing": sum(r["unmarked_while_drawing"]
                                                      for r in runs),
                        "finals": [r["final"] for r in runs],
                    }
        finally:
            browser.close()
    return {"cold_start_s": round(cold, 2), "repeats": repeats, "by_strokes": by_strokes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.browser",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10,
                        help="digits drawn per stroke count (default 10)")
    parser.add_argument("--model", default=None, help="model file (default: $MNIST_CNN_MODEL "
                        "or models/cnn_model.keras)")
    parser.add_argument("--app", default=str(APP_SCRIPT),
                        help="the app script (default: app/streamlit_app.py)")
    parser.add_argument("--log", default=None, help="write the app server's output here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).is_file():
        print(f"error: {CHROMIUM} is missing (install Debian chromium: `make chromium`)",
              file=sys.stderr)
        return 1
    res = measure(model=args.model, repeats=args.repeats, log_path=args.log, script=args.app)
    print(f"Browser: cold start {res['cold_start_s']:.1f} s (process start -> canvas "
          f"drawable); {res['repeats']} digits per stroke count, drawn quickly with the mouse")
    for k, r in res["by_strokes"].items():
        med = "-" if r["median_s"] is None else f"{r['median_s']:.2f}"
        p95 = "-" if r["p95_s"] is None else f"{r['p95_s']:.2f}"
        right = sum(f == str(r["digit"]) for f in r["finals"])
        print(f"{k} stroke{'s' if k > 1 else ' '} ({r['digit']}): last mouse-up -> final answer "
              f"median {med} s, p95 {p95} s; unmarked answers for an unfinished drawing: "
              f"{r['stale_after_last_up']} after the last stroke, "
              f"{r['unmarked_while_drawing']} while drawing; read correctly "
              f"{right}/{len(r['finals'])}")
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
