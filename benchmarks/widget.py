"""The book's in-page digit widget in a real browser: update time, latency and weight.

``python -m benchmarks.widget [--repeats 30] [--export DIR] [--json]``
(from the repository root; run it on an otherwise idle machine: it measures time)

Opens the widget from disk (``file://``, as a reader may open the built book) in
headless Chromium, with the scripts from ``book/_static/digit_widget/`` and the
weights that ``python -m mnist_cnn export-web`` wrote there, and measures

- what the widget adds to a page: its scripts, its style sheet and ``weights.js``,
  in bytes (and gzipped, as GitHub Pages serves them);
- for digits drawn with the mouse at random sizes and places: the time of each
  update of the page while the pen moves and when it lifts (``data-update-ms``:
  preprocessing, the network and the drawing of every layer's view), median and
  95th percentile over every update; the time from the
  last stroke (the pointerup event) to the digit in the page
  (``data-latency-ms``: preprocessing and network) and to the frame that shows
  it (``data-shown-ms``), median and 95th percentile; and the wall time from the
  mouse-up sent by the driver to the digit seen by it (includes the driver's
  round trips).

The page helpers (:func:`make_page`, :func:`open_page`, :func:`draw_mouse`,
:func:`draw_touch`, :func:`wait_state`, :func:`widget_result`) drive the tests too; the
strokes are drawn by :func:`app.browser_driver.draw_strokes`, as on the app's canvas.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from mnist_cnn.bench.stats import summary
from mnist_cnn.canvas import DIGIT_STROKES, stroke_points
from mnist_cnn.web import WEIGHTS_JS, WIDGET_FILES, default_out_dir, widget_bytes

from app.browser_driver import draw_strokes, launch_browser

WIDGET_DIR = Path(__file__).resolve().parents[1] / "book" / "_static" / "digit_widget"
ROOT = '[data-testid="digit-widget"]'
TIMEOUT_MS = 30_000
TARGET_MS, TARGET_BYTES = 50, 1_200_000

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>digit widget</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><h1 id="rest">The rest of the page</h1>
<div data-testid="digit-widget"></div>
<script src="widget.js"></script></body></html>
"""


def make_page(folder: Path, weights: Path | None = None, weights_text: str | None = None) -> str:
    """Write a page with the widget into ``folder``; return its file:// URL.
    ``weights``: a weights.js to copy; ``weights_text``: its content instead;
    neither: the page has no weights."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in WIDGET_FILES:
        shutil.copy(WIDGET_DIR / name, folder / name)
    if weights_text is not None:
        (folder / WEIGHTS_JS).write_text(weights_text)
    elif weights is not None:
        shutil.copy(weights, folder / WEIGHTS_JS)
    (folder / "index.html").write_text(PAGE)
    return (folder / "index.html").as_uri()


def open_page(browser, url: str, **context_args):
    """(page, console errors, requested URLs) for ``url`` in a fresh browser context."""
    context = browser.new_context(**context_args)
    page = context.new_page()
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url, wait_until="load")
    return page, errors, requests


def wait_state(page, *states: str, root: str = ROOT, timeout_ms: int = TIMEOUT_MS) -> str:
    """Wait until the widget's data-state is one of ``states``; return it."""
    page.wait_for_function(
        "([sel, states]) => states.includes(document.querySelector(sel)?.dataset.state)",
        arg=[root, list(states)], timeout=timeout_ms)
    return page.eval_on_selector(root, "el => el.dataset.state")


def widget_result(page, root: str = ROOT):
    """(digit or None, probabilities or None) that the widget's root carries."""
    digit, probs = page.eval_on_selector(
        root, "el => [el.getAttribute('data-digit'), el.getAttribute('data-probabilities')]")
    return (None if digit is None else int(digit)), (None if probs is None else json.loads(probs))


def _canvas_box(page, root: str) -> dict:
    return page.locator(f"{root} canvas").first.bounding_box()


def draw_mouse(page, strokes, root: str = ROOT) -> None:
    """Draw ``strokes`` (lists of (x, y) in 280x280 canvas pixels) with the mouse."""
    draw_strokes(page, _canvas_box(page, root), strokes)


def draw_touch(page, strokes, root: str = ROOT) -> None:
    """Draw ``strokes`` with a finger: CDP touch events (the context needs has_touch)."""
    draw_strokes(page, _canvas_box(page, root), strokes, touch=True)


def measure(export_dir: Path | None = None, repeats: int = 30, seed: int = 0) -> dict:
    from playwright.sync_api import sync_playwright

    export_dir = Path(export_dir) if export_dir else default_out_dir()
    if not (export_dir / WEIGHTS_JS).is_file():
        raise SystemExit(f"no {WEIGHTS_JS} in {export_dir}: run `make web-export` first")
    rng = np.random.default_rng(seed)
    digits = sorted(DIGIT_STROKES)
    latency, shown, wall, correct = [], [], [], 0
    record_updates = """(sel) => {
        const root = document.querySelector(sel);
        window.widgetUpdates = [];
        new MutationObserver(() => window.widgetUpdates.push(+root.dataset.updateMs))
            .observe(root, { attributes: true, attributeFilter: ["data-update-ms"] });
    }"""
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser = launch_browser(pw)
        url = make_page(Path(tmp), export_dir / WEIGHTS_JS)
        t0 = time.perf_counter()
        page, errors, _ = open_page(browser, url, viewport={"width": 900, "height": 700})
        if wait_state(page, "ready", "error") != "ready":
            raise SystemExit("the widget did not load: "
                             + page.inner_text(f"{ROOT} .dw-message"))
        load_s = time.perf_counter() - t0
        page.evaluate(record_updates, ROOT)
        for i in range(repeats):
            digit = digits[i % len(digits)]
            size = rng.uniform(110, 230)
            left, top = rng.uniform(5, 275 - size), rng.uniform(5, 275 - size)
            page.get_by_role("button", name="Clear").click()
            wait_state(page, "ready")
            # every stroke, the pen still down at the end of the last one
            draw_strokes(page, _canvas_box(page, ROOT), stroke_points(digit, left, top, size),
                         hold=True)
            page.eval_on_selector(ROOT, "el => { delete el.dataset.shownMs; }")
            start = time.perf_counter()
            page.mouse.up()                      # the end of the last stroke
            page.wait_for_function(f"document.querySelector('{ROOT}').dataset.shownMs",
                                   timeout=TIMEOUT_MS, polling="raf")
            wall.append((time.perf_counter() - start) * 1000)
            ms = page.eval_on_selector(ROOT, "el => [el.dataset.latencyMs, el.dataset.shownMs]")
            latency.append(float(ms[0]))
            shown.append(float(ms[1]))
            correct += widget_result(page)[0] == digit
        updates = page.evaluate("window.widgetUpdates")
        browser.close()
    return {"repeats": repeats, "load_seconds": round(load_s, 2),
            "updates": len(updates), "update_ms": summary(updates, 2),
            "latency_ms": summary(latency, 2), "shown_ms": summary(shown, 2),
            "wall_ms": summary(wall, 2),
            "read_correctly": correct, "console_errors": errors,
            "bytes": widget_bytes(export_dir, WIDGET_DIR)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="digits to draw")
    parser.add_argument("--export", default=None,
                        help="folder with weights.js (default: book/_static/digit_widget)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args(argv)
    r = measure(args.export, args.repeats, args.seed)
    b = r["bytes"]
    print(f"Book widget in headless Chromium, {r['repeats']} digits drawn with the mouse "
          f"({r['read_correctly']} read as drawn; loaded in {r['load_seconds']} s): "
          f"each update (preprocessing + network + every layer's view drawn; "
          f"{r['updates']} while drawing and at pen-up) median {r['update_ms']['median']} ms, "
          f"p95 {r['update_ms']['p95']} ms, target <= {TARGET_MS} ms; "
          f"last stroke -> digit shown median {r['shown_ms']['median']} ms "
          f"(p95 {r['shown_ms']['p95']}; preprocessing + network "
          f"{r['latency_ms']['median']} ms; seen by the driver {r['wall_ms']['median']} ms), "
          f"target <= {TARGET_MS} ms. Adds {b['total']:,} bytes to the page "
          f"({b['files'][WEIGHTS_JS]:,} of them weights; {b['gzip']:,} gzipped), "
          f"target <= {TARGET_BYTES:,}.")
    if r["console_errors"]:
        print(f"console errors: {r['console_errors']}")
    if args.json:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
