"""The book's in-page digit widget: its export, and pages that load it in Chromium.

A test page is a folder with the widget's scripts, a ``weights.js`` and an
``index.html``, opened from disk (``file://``), as a reader may open the built book.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from mnist_cnn import paths
from mnist_cnn._io import sha256_file
from mnist_cnn.web import MANIFEST, WEIGHTS_JS, default_out_dir, export_web, read_weights_js

WIDGET_DIR = paths.REPO_ROOT / "book" / "_static" / "digit_widget"
SCRIPTS = ("widget.js", "forward.js", "preprocess.js")
TIMEOUT_MS = 30_000

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>widget test</title></head>
<body><h1 id="rest">The rest of the page</h1>
<div data-testid="digit-widget"></div>
<script src="widget.js"></script></body></html>
"""


def fresh_export(model_path: Path, tmp_dir: Path) -> Path:
    """A folder holding the web export of ``model_path``: the book's own export when
    it was made from this very model file and verifies, else a new one in ``tmp_dir``."""
    book = default_out_dir()
    try:
        manifest, _ = read_weights_js(book / WEIGHTS_JS)
        if manifest["model_sha256"] == sha256_file(model_path) and (book / MANIFEST).is_file():
            return book
    except (OSError, ValueError, KeyError):
        pass
    out = tmp_dir / "web_export"
    if not (out / WEIGHTS_JS).is_file():
        export_web(model_path, out, progress=False)
    return out


def make_page(folder: Path, weights: Path | None = None, weights_text: str | None = None) -> str:
    """Write a test page into ``folder``; return its file:// URL. ``weights`` is a
    weights.js to copy, ``weights_text`` replaces its content; neither: no weights."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in SCRIPTS:
        shutil.copy(WIDGET_DIR / name, folder / name)
    if weights_text is not None:
        (folder / WEIGHTS_JS).write_text(weights_text)
    elif weights is not None:
        shutil.copy(weights, folder / WEIGHTS_JS)
    (folder / "index.html").write_text(PAGE)
    return (folder / "index.html").as_uri()


def open_page(browser, url: str, **context_args):
    """(page, console errors, requests) for ``url`` in a fresh browser context."""
    context = browser.new_context(**context_args)
    page = context.new_page()
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url, wait_until="load")
    return page, errors, requests


def wait_state(page, *states: str, root: str = '[data-testid="digit-widget"]') -> str:
    """Wait until the widget's data-state is one of ``states``; return it."""
    page.wait_for_function(
        "([sel, states]) => states.includes(document.querySelector(sel)?.dataset.state)",
        arg=[root, list(states)], timeout=TIMEOUT_MS)
    return page.eval_on_selector(root, "el => el.dataset.state")


def widget_result(page, root: str = '[data-testid="digit-widget"]'):
    """(digit or None, probabilities or None) the widget's root carries."""
    digit, probs = page.eval_on_selector(
        root, "el => [el.getAttribute('data-digit'), el.getAttribute('data-probabilities')]")
    return (None if digit is None else int(digit)), (None if probs is None else json.loads(probs))


def draw_mouse(page, strokes, canvas_selector='[data-testid="digit-widget"] canvas'):
    """Draw ``strokes`` (canvas-pixel points, 280x280) with the mouse."""
    box = page.locator(canvas_selector).first.bounding_box()
    sx, sy = box["width"] / 280, box["height"] / 280
    for stroke in strokes:
        x0, y0 = stroke[0]
        page.mouse.move(box["x"] + x0 * sx, box["y"] + y0 * sy)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * sx, box["y"] + y * sy)
        page.mouse.up()


def draw_touch(page, strokes, canvas_selector='[data-testid="digit-widget"] canvas'):
    """Draw ``strokes`` with a finger (CDP touch events; the context needs has_touch)."""
    box = page.locator(canvas_selector).first.bounding_box()
    sx, sy = box["width"] / 280, box["height"] / 280
    cdp = page.context.new_cdp_session(page)
    for stroke in strokes:
        pts = [{"x": box["x"] + x * sx, "y": box["y"] + y * sy} for x, y in stroke]
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [pts[0]]})
        for p in pts[1:]:
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [p]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()
