"""The canvas app's latency benchmark, in a real browser.

``python -m benchmarks.browser [--repeats 10] [--model PATH] [--app SCRIPT] [--json]``
(from the repository root; run it on an otherwise idle machine: it measures time)

Starts the app (``streamlit run``) on a free loopback port, opens it in
headless Chromium and measures

- cold start: process start -> the canvas is on screen and accepts strokes;
- for digits drawn quickly with 1, 2, 4 and 6 strokes (the canvas is reset between
  digits), recording what the page shows as the answer every 50 ms and on every
  change: the time from the last mouse-up to the final answer shown as current
  (median, p95), and how many answers for an unfinished drawing were shown unmarked
  (not dimmed as "Updating…"), after the last stroke and while drawing.

The browser, the app server and the page helpers live in :mod:`app.browser_driver`
(shared with the browser tests and the screenshot script); this adds the answer log
(:func:`draw_and_watch`, :func:`analyse_answer_log`), which the tests use too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mnist_cnn.bench.stats import summary
from mnist_cnn.canvas import stroke_points

from app.browser_driver import (
    ANSWER_STATE_JS,
    APP_SCRIPT,
    CHROMIUM,
    METRIC_VALUE,
    AppServer,
    draw_strokes,
    launch_browser,
    open_app,
    reset_canvas,
    wait_for_prediction,
)
from app.page_assets import fill

# Records what the page presents as the answer, every 50 ms and on every change, with
# the times of pointer downs and ups, on the page's own clock (performance.now()).
ANSWER_LOG_JS = fill("""() => {
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
  watch(document.documentElement, {attributes: true, attributeFilter: ["$pending"]});
  for (const ev of ["pointerdown", "pointerup"]) {
    document.addEventListener(ev, () => log.push({t: performance.now(), why: ev}), true);
  }
}""").replace("STATE", ANSWER_STATE_JS)


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


def draw_and_watch(page, box: dict, strokes, timeout_ms: int = 60_000,
                   touch: bool = False) -> dict:
    """Draw a digit (several strokes; with the mouse, or a finger: ``touch``) while
    recording what the page shows as the answer; returns :func:`analyse_answer_log`'s
    figures plus ``final`` (the settled answer) and ``log`` (the records)."""
    start_answer_log(page)
    draw_strokes(page, box, strokes, touch=touch)
    final = wait_for_prediction(page, timeout_ms, steady_ms=1000)
    log = answer_log(page)
    return {"final": final, **analyse_answer_log(log, final, len(strokes)), "log": log}


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
                            reset_canvas(page)
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
