"""Load benchmark: N people drawing at once on one app process.

``python -m benchmarks.load [--sessions 1 5 20] [--seconds 60 | --rounds R]
[--browsers 3] [--model PATH] [--json]``  (run it on an otherwise idle machine: the browsers
and the app share its cores; also ``make bench-app``)

Starts the app once (``streamlit run app/streamlit_app.py`` on a free loopback
port), then for each N drives N concurrent sessions for ``--seconds``: each
session draws a digit with the mouse, waits for the "Prediction" metric, presses
"Reset canvas", and repeats (or, with ``--rounds R``, each session draws exactly
R digits however long that takes: the count no longer depends on the machine's
speed, which is what the test suite needs). It reports, per N: predictions per
second (all sessions together), median and p95 latency (mouse released -> metric
shown), errors (timeouts, page errors, lost connections; target 0), misreads
(wrong digit shown), predictions per session (each must get its share), the
server's resident memory (psutil, sampled every 0.5 s), its CPU use (percent
of one core; the machine's cores are shared with the browsers, so this shows who
the bottleneck is) and its cost per digit: the app process's CPU time while the
sessions drew divided by the digits drawn (target: at most 0.3 CPU-seconds).
At the end it reports how many times the process loaded the model. An error
sample says what the page showed when it happened (alerts, exceptions, the
run/connection status), so a failure on a machine far away can be diagnosed from
its output alone.

Which clients, and why:

- A Streamlit session is a websocket speaking Streamlit's protobuf protocol, and
  the canvas is a components-v2 element whose value is produced by its own
  JavaScript. The only faithful client is a browser running that JavaScript:
  a hand-written websocket client would have to forge the component's
  messages (and would test our forgery), AppTest runs the script in-process
  and never touches the server.
- Real browser processes are heavy (hundreds of MB and a share of our two
  cores each), so a few (``--browsers``, default 3) are launched and the
  sessions are spread over them as separate pages. Each page is an
  independent Streamlit session with its own websocket, script runs and
  session state, exactly like a separate visitor; what pages share is only
  the browser's own process. That is the "lighter client": a page instead of
  a whole browser. Pages are driven concurrently with Playwright's asyncio API.
- Each page has its own browser context, which headless Chromium shows as its
  own window. Pages sharing one context are tabs of one window, and only the
  front tab renders at full rate: the others get a frame about once a second,
  and every mouse event sent to them waits for one (measured: a 25-point
  stroke took 15-23 s in a background tab, 0.45 s in the front one). The
  benchmark then measured tab throttling instead of the app, and a wait in a
  background tab could exceed its timeout. The flags below switch off
  Chromium's other background throttling (timers, renderer priority).

Model loads are counted from the server's output: the server is started
through a small bootstrap that wraps ``Predictor.from_file`` to print one line
per load before handing over to Streamlit's own command line, so the app's
code is untouched. The model must be loaded once per process, whatever N is.

The browser flags, the system Chromium (never ``playwright install``) and the strokes'
input events are those of :mod:`app.browser_driver`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from mnist_cnn.bench.stats import summary
from mnist_cnn.canvas import stroke_points

from app.browser_driver import (
    APP_SCRIPT,
    CANVAS,
    CHROMIUM,
    CHROMIUM_ARGS,
    METRIC_VALUE,
    REPO,
    RESET_BUTTON,
    AppServer,
    pen_events,
)

LOAD_MARKER = "MNIST_CNN_BENCH_MODEL_LOAD"
# Keep pages in windows that are not in front running at full speed.
EXTRA_ARGS = ["--disable-background-timer-throttling", "--disable-renderer-backgrounding",
              "--disable-backgrounding-occluded-windows"]
# (digit, left, top, size) in canvas pixels; single-stroke digits, so the
# prediction appears only when the whole digit is drawn.
STROKES = [(7, 40, 40, 180), (1, 110, 40, 200), (0, 60, 70, 160), (2, 30, 30, 150),
           (3, 120, 100, 140), (4, 50, 60, 190)]
TIMEOUT_MS = 90_000

# Runs in the server process: count model loads, then start Streamlit as usual.
_BOOTSTRAP = f"""
import sys
from mnist_cnn.predict import Predictor
_orig = Predictor.from_file.__func__

def _counted(cls, path=None):
    print("{LOAD_MARKER}", path, flush=True)
    return _orig(cls, path)

Predictor.from_file = classmethod(_counted)
from streamlit.web import cli
sys.argv = ["streamlit", "run", *sys.argv[1:]]
sys.exit(cli.main())
"""


class CountingAppServer(AppServer):
    """The app on loopback, started through :data:`_BOOTSTRAP`; output kept in a log file."""

    def __enter__(self) -> CountingAppServer:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        if self.model is not None:
            env["MNIST_CNN_MODEL"] = str(self.model)
        cmd = [sys.executable, "-c", _BOOTSTRAP, str(APP_SCRIPT),
               "--server.headless", "true", "--server.address", "127.0.0.1",
               "--server.port", str(self.port), "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none"]
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in __exit__
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=REPO)
        self.wait_healthy()
        return self

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        self._log.close()

    def model_loads(self) -> int:
        return Path(self.log_path).read_text(errors="replace").count(LOAD_MARKER)


class MemorySampler:
    """Samples the RSS of a process (and its children) every ``interval`` s in a thread."""

    def __init__(self, pid: int, interval: float = 0.5):
        import psutil

        self.proc = psutil.Process(pid)
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the server process has used so far."""
        t = self.proc.cpu_times()
        return t.user + t.system

    def rss_mb(self) -> float:
        import psutil

        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total / 2**20

    def _run(self):
        while not self._stop.is_set():
            self.samples.append(self.rss_mb())
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# What the page shows, for error reports: Streamlit's alerts and exceptions, its
# status widget ("Running...", "Connecting") and dialogs (e.g. a lost connection).
_PAGE_STATE_JS = """() => {
  const texts = (sel) => [...document.querySelectorAll(sel)]
      .map((e) => e.innerText.trim().replace(/\\s+/g, " ").slice(0, 160)).filter(Boolean);
  return {alerts: texts('[data-testid="stAlert"]'),
          exceptions: texts('[data-testid="stException"]'),
          status: texts('[data-testid="stStatusWidget"]'),
          dialogs: texts('[role="dialog"]'),
          metrics: texts('[data-testid="stMetricValue"]')};
}"""


async def _page_state(page) -> str:
    """A one-line summary of what the page shows (best effort: never raises)."""
    try:
        state = await asyncio.wait_for(page.evaluate(_PAGE_STATE_JS), timeout=5)
    except Exception as exc:  # noqa: BLE001 - a crashed or hung page is itself the answer
        return f"page state unavailable: {type(exc).__name__}"
    shown = [f"{name}={vals}" for name, vals in state.items() if vals]
    return "page shows " + ("; ".join(shown) if shown else "no alert, status or metric")


async def _describe(exc: Exception, page) -> str:
    """An error sample: the exception's type and first line, and what the page showed."""
    first = (str(exc).splitlines() or [""])[0]  # some exceptions have no message
    return f"{type(exc).__name__}: {first} ({await _page_state(page)})"


async def _session(k: int, page, url: str, results: dict) -> None:
    """One visitor: open the app, then draw / wait for the prediction / reset until the
    deadline (or for ``results["rounds"]`` digits)."""
    errors = results["errors"]
    page.on("pageerror", lambda e: errors.append(f"session {k}: page error: {e}"))
    try:
        await page.goto(url, timeout=TIMEOUT_MS)
        canvas = page.locator(CANVAS)
        await canvas.wait_for(state="visible", timeout=TIMEOUT_MS)
        box = await canvas.bounding_box()
    except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
        errors.append(f"session {k}: could not open the app: {await _describe(exc, page)}")
        return
    results["ready"] += 1
    # Start together: sessions that opened early wait for the common start signal.
    await results["start"].wait()
    deadline, rounds = results["deadline"], results["rounds"]
    started = 0  # rounds started (each ends in a prediction or an error)
    metric = page.locator(METRIC_VALUE)
    while (started < rounds) if rounds else (time.perf_counter() < deadline):
        # sessions start on different digits
        digit, left, top, size = STROKES[(k + started) % len(STROKES)]
        started += 1
        try:
            if await metric.count():
                await page.locator(RESET_BUTTON).click(timeout=TIMEOUT_MS)
                await metric.wait_for(state="detached", timeout=TIMEOUT_MS)
            t_draw = time.perf_counter()
            for method, args in pen_events(box, stroke_points(digit, left, top, size),
                                           hold=True):
                await getattr(page.mouse, method)(*args)
            t0 = time.perf_counter()
            await page.mouse.up()
            await metric.wait_for(state="visible", timeout=TIMEOUT_MS)
            shown = (await metric.inner_text()).strip()
            t1 = time.perf_counter()
        except Exception as exc:  # noqa: BLE001
            if not rounds and time.perf_counter() >= deadline + TIMEOUT_MS / 1000:
                break
            errors.append(f"session {k}: {await _describe(exc, page)}")
            continue
        if rounds or t1 <= deadline:  # count only predictions completed inside the window
            # (opening 20 pages on two cores takes a while: the clock starts after)
            results["latencies"].append(t1 - t0)
            results["draw_s"].append(t0 - t_draw)
            results["per_session"][k] += 1
            if shown != str(digit):
                results["misreads"] += 1


async def _run_level(url: str, n: int, seconds: float, browsers: int,
                     rounds: int | None = None, cpu_s=None) -> dict:
    """One load level; ``cpu_s()`` (the server's CPU seconds so far) is read when the
    sessions start drawing and when they stop, for the server's CPU time per digit."""
    from playwright.async_api import async_playwright

    results = {"latencies": [], "draw_s": [], "errors": [], "misreads": 0, "ready": 0,
               "start": asyncio.Event(), "rounds": rounds, "per_session": [0] * n}
    async with async_playwright() as pw:
        launched = [await pw.chromium.launch(executable_path=CHROMIUM,
                                             args=CHROMIUM_ARGS + EXTRA_ARGS, headless=True)
                    for _ in range(min(n, browsers))]
        try:
            # One context (= one window) per session: see the module doc.
            contexts = [await launched[k % len(launched)].new_context(
                viewport={"width": 1300, "height": 1000}) for k in range(n)]
            pages = [await c.new_page() for c in contexts]
            tasks = [asyncio.create_task(_session(k, p, url, results))
                     for k, p in enumerate(pages)]
            # Wait until every session has its canvas (or failed), then start the clock.
            t_open = time.perf_counter()
            while results["ready"] + len(results["errors"]) < n:
                await asyncio.sleep(0.2)
            open_s = time.perf_counter() - t_open
            t_start = time.perf_counter()
            cpu_start = cpu_s() if cpu_s else None
            results["deadline"] = t_start + seconds
            results["start"].set()
            await asyncio.gather(*tasks)
            cpu_drawing = cpu_s() - cpu_start if cpu_s else None
            if rounds:  # the level lasts as long as the sessions take
                seconds = time.perf_counter() - t_start
        finally:
            for b in launched:
                await b.close()
    lat = results["latencies"]
    stats = summary(lat, digits=3)
    return {
        "sessions": n,
        "seconds": seconds,
        "open_s": round(open_s, 1),
        "rounds": rounds,
        "predictions": len(lat),
        "per_session": results["per_session"],
        "predictions_per_s": round(len(lat) / seconds, 2),
        "median_latency_s": stats["median"],
        # The client's own time to draw a stroke: shows the browsers keep up.
        "median_draw_s": summary(results["draw_s"], digits=3)["median"] if lat else None,
        "p95_latency_s": stats["p95"],
        # The app process's CPU time while the sessions drew, per digit drawn (every
        # stroke, reset and prediction of the level; page opening excluded).
        "server_cpu_s_per_digit": (round(cpu_drawing / len(lat), 3)
                                   if lat and cpu_drawing is not None else None),
        "errors": len(results["errors"]),
        "error_samples": results["errors"][:5],
        "misreads": results["misreads"],
    }


def measure(sessions=(1, 5, 20), seconds: float = 60, browsers: int = 3, model=None,
            log_path=None, rounds: int | None = None) -> dict:
    """Run every load level against one app process; returns the figures (see module doc).

    ``rounds``: each session draws exactly this many digits (``seconds`` is then unused
    and each level's ``seconds`` is how long it took)."""
    log_path = log_path or Path(tempfile.mkdtemp(prefix="mnist-load-")) / "server.log"
    levels = []
    with CountingAppServer(model=model, log_path=log_path) as server:
        with MemorySampler(server.proc.pid) as mem:
            idle = mem.rss_mb()
            for n in sessions:
                before, cpu0, t0 = len(mem.samples), mem.cpu_s(), time.perf_counter()
                res = asyncio.run(_run_level(server.url, n, seconds, browsers, rounds,
                                             cpu_s=mem.cpu_s))
                # Server CPU over the whole level (page opening included), as a share of
                # one core: shows whether the server or the browsers use up the CPUs.
                res["server_cpu_pct"] = round(
                    100 * (mem.cpu_s() - cpu0) / (time.perf_counter() - t0), 1)
                window = mem.samples[before:] or [mem.rss_mb()]
                res["server_rss_peak_mb"] = round(max(window), 1)
                res["server_rss_end_mb"] = round(window[-1], 1)
                levels.append(res)
                print(_line(res), flush=True)
        loads = server.model_loads()
    return {"levels": levels, "model_loads": loads, "server_rss_idle_mb": round(idle, 1),
            "server_log": str(log_path)}


def _line(r: dict) -> str:
    med = "-" if r["median_latency_s"] is None else f"{r['median_latency_s']:.2f}"
    draw = "-" if r["median_draw_s"] is None else f"{r['median_draw_s']:.2f}"
    p95 = "-" if r["p95_latency_s"] is None else f"{r['p95_latency_s']:.2f}"
    cpu = "-" if r["server_cpu_s_per_digit"] is None else f"{r['server_cpu_s_per_digit']:.2f}"
    return (f"N={r['sessions']:>3}: {r['predictions_per_s']:6.2f} predictions/s "
            f"({r['predictions']} in {r['seconds']:.0f} s), latency median {med} s, "
            f"p95 {p95} s, drawing a stroke {draw} s, "
            f"per session {min(r['per_session'])}-{max(r['per_session'])}, "
            f"errors {r['errors']}, misreads {r['misreads']}, "
            f"server RSS peak {r['server_rss_peak_mb']:.0f} MB, "
            f"server CPU {r['server_cpu_pct']:.0f} % of a core, "
            f"{cpu} CPU-s per digit drawn")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 5, 20],
                        help="concurrent sessions per level (default: 1 5 20)")
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of each level")
    parser.add_argument("--rounds", type=int, default=None,
                        help="each session draws exactly this many digits (instead of --seconds)")
    parser.add_argument("--browsers", type=int, default=3,
                        help="browser processes; sessions are spread over them as pages")
    parser.add_argument("--model", default=None, help="model file (default: $MNIST_CNN_MODEL "
                        "or models/cnn_model.keras)")
    parser.add_argument("--log", default=None, help="write the app server's output here")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args(argv)
    if (any(n < 1 for n in args.sessions) or args.seconds <= 0 or args.browsers < 1
            or (args.rounds is not None and args.rounds < 1)):
        parser.error("--sessions, --seconds, --rounds and --browsers must be positive")
    if not Path(CHROMIUM).is_file():
        print(f"error: {CHROMIUM} is missing (install Debian chromium: `make chromium`)",
              file=sys.stderr)
        return 1
    res = measure(args.sessions, args.seconds, args.browsers, args.model, args.log, args.rounds)
    errors = sum(r["errors"] for r in res["levels"])
    print(f"Load: {len(res['levels'])} levels on one app process; model loaded "
          f"{res['model_loads']} time(s); server RSS idle {res['server_rss_idle_mb']:.0f} MB; "
          f"{errors} error(s) in total")
    if args.json:
        print(json.dumps(res))
    return 0 if errors == 0 and res["model_loads"] == 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
