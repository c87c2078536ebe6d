"""Capture a screenshot of the running app for the book and the README.

    python app/screenshot.py [--out book/_static/app_screenshot.png] [--model PATH]

Starts the app on a free loopback port, draws a digit with the mouse in
headless Chromium (``app/browser_driver.py``, the driver of the browser tests and
benchmarks too) and saves the app's
main area (canvas, prediction, the image the model sees, the probabilities)
without the sidebar: narrow enough to show in the book's column at close to
its own size, so its text stays legible.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: import its folder as the package `app`

from mnist_cnn.canvas import stroke_points  # noqa: E402

from app.browser_driver import (  # noqa: E402
    AppServer,
    draw_strokes,
    launch_browser,
    open_app,
    wait_for_full_result,
)

MAIN_AREA = '[data-testid="stMainBlockContainer"]'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "book" / "_static" / "app_screenshot.png"))
    parser.add_argument("--model", default=None)
    parser.add_argument("--digit", type=int, default=3)
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = launch_browser(pw)
        try:
            with AppServer(model=args.model) as server:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                box = open_app(page, server.url)
                draw_strokes(page, box, stroke_points(args.digit, 60, 50, 170))
                wait_for_full_result(page)
                main = page.locator(MAIN_AREA)
                # the block's own padding is blank: keep the content and a 16-px margin
                pad = main.evaluate("e => { const s = getComputedStyle(e); return ["
                                    "parseFloat(s.paddingLeft), parseFloat(s.paddingTop),"
                                    " parseFloat(s.paddingBottom)]; }")
                area = main.bounding_box()
                page.screenshot(path=str(out), clip={
                    "x": area["x"] + pad[0] - 16, "y": area["y"] + pad[1] - 16,
                    "width": area["width"] - 2 * pad[0] + 32,
                    "height": area["height"] - pad[1] - pad[2] + 32})
        finally:
            browser.close()
    print(f"Saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
