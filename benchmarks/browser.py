"""Drive the canvas app in a real browser: latency benchmark and helpers.

``python -m benchmarks.browser [--strokes 10] [--model PATH] [--json]``

Starts the app (``streamlit run``) on a free loopback port, opens it in
headless Chromium (Debian's ``/usr/bin/chromium`` through Playwright, never a
browser downloaded by ``playwright install``) and measures

- cold start: process start -> the canvas is on screen and accepts strokes;
- latency: mouse released after drawing a digit -> the "Prediction" metric is
  shown, median over N strokes (the canvas is reset between strokes).

The same helpers (:class:`AppServer`, :func:`open_app`, :func:`draw_digit`,
:func:`reset_canvas`, :func:`wait_for_prediction`) drive the browser tests
and the screenshot script.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

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
    """

    def __init__(self, model=None, log_path=None, port=None, env=None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.model = model
        self.log_path = log_path
        self.env = env or {}
        self.proc = None
        self.started = None

    def __enter__(self) -> AppServer:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **self.env)
        if self.model is not None:
            env["MNIST_CNN_MODEL"] = str(self.model)
        cmd = [sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT),
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


def wait_for_prediction(page, timeout_ms: int = 30_000) -> str:
    """Wait for the Prediction metric and return its text."""
    metric = page.locator(METRIC_VALUE)
    metric.wait_for(state="visible", timeout=timeout_ms)
    return metric.inner_text().strip()


def wait_for_full_result(page, timeout_ms: int = 30_000) -> None:
    """Wait until the whole result (prediction, probabilities chart) is drawn and the
    app has finished its run - for screenshots."""
    wait_for_prediction(page, timeout_ms)
    page.locator('[data-testid="stVegaLiteChart"]').first.wait_for(state="visible",
                                                                   timeout=timeout_ms)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached",
                                                            timeout=timeout_ms)
    page.wait_for_timeout(500)  # vega's own drawing finishes after the element appears


# Where each benchmark stroke goes: (digit, left, top, size) in canvas pixels.
BENCH_STROKES = [(7, 30, 30, 150), (1, 120, 40, 200), (0, 60, 80, 160), (4, 100, 100, 150),
                 (2, 20, 20, 120), (3, 140, 120, 130), (7, 90, 60, 190), (1, 30, 150, 110),
                 (0, 150, 20, 120), (4, 40, 60, 200)]


def measure(model=None, strokes: int = 10, log_path=None) -> dict:
    """Cold start and stroke -> prediction latency in a real browser.

    Returns dict: cold_start_s (process start -> canvas drawable), latencies_s
    (mouse released -> Prediction metric shown, one per stroke), median_s,
    p90_s, predictions (digit drawn, metric shown).
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch_browser(pw)
        try:
            with AppServer(model=model, log_path=log_path) as server:
                page = browser.new_page(viewport={"width": 1300, "height": 1000})
                box = open_app(page, server.url)
                cold = time.perf_counter() - server.started
                latencies, predictions = [], []
                for k in range(strokes):
                    digit, left, top, size = BENCH_STROKES[k % len(BENCH_STROKES)]
                    if page.locator(METRIC_VALUE).count():
                        reset_canvas(page)
                    # Everything but the last mouse-up of the digit is drawing time.
                    pts = stroke_points(digit, left, top, size)
                    for i, stroke in enumerate(pts):
                        page.mouse.move(box["x"] + stroke[0][0], box["y"] + stroke[0][1])
                        page.mouse.down()
                        for x, y in stroke[1:]:
                            page.mouse.move(box["x"] + x, box["y"] + y)
                        t0 = time.perf_counter()
                        page.mouse.up()
                        if i == len(pts) - 1:
                            shown = wait_for_prediction(page)
                            latencies.append(time.perf_counter() - t0)
                            predictions.append((digit, shown))
        finally:
            browser.close()
    lat = sorted(latencies)
    return {
        "cold_start_s": round(cold, 2),
        "latencies_s": [round(v, 3) for v in latencies],
        "median_s": round(statistics.median(lat), 3),
        "p90_s": round(lat[min(len(lat) - 1, int(0.9 * len(lat)))], 3),
        "predictions": predictions,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.browser",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--strokes", type=int, default=10)
    parser.add_argument("--model", default=None, help="model file (default: $MNIST_CNN_MODEL "
                        "or models/cnn_model.keras)")
    parser.add_argument("--log", default=None, help="write the app server's output here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    res = measure(model=args.model, strokes=args.strokes, log_path=args.log)
    right = sum(int(d == int(s)) for d, s in res["predictions"] if s.isdigit())
    print(f"Browser: cold start {res['cold_start_s']:.1f} s (process start -> canvas "
          f"drawable); stroke released -> prediction shown: median {res['median_s']:.2f} s, "
          f"p90 {res['p90_s']:.2f} s over {len(res['latencies_s'])} strokes "
          f"({right}/{len(res['predictions'])} read correctly)")
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
