"""Fault benchmark: break things on purpose, end to end, and time the recovery.

``python -m benchmarks.faults [--model PATH] [--skip-browser] [--json]``
(run it on an otherwise idle machine: it measures recovery times; also ``make bench-app``)

Scenarios, each printed as one line (what happened, how long it took):

1. app: the served model file is corrupted, then deleted, while the app runs
   (``streamlit run`` on loopback, a real browser), then a good file returns.
   Times: fault -> clear message on screen (after a page reload); good file back ->
   "Try again" pressed -> a drawn digit predicted, same process (no restart).
2. ``train-numpy`` and ``train-keras`` interrupted with SIGINT (Ctrl-C) mid-epoch:
   exit status, SIGINT -> exit time, previous model file and card byte-identical
   (SHA-256), no temporary files left.
3. dataset cache: one byte flipped in a copy of the training images -> detected and
   replaced on the next load; time of the verify + replace.
4. read-only cache directory -> the error message (names the directory).
5. unsafe model files: a ``.keras`` with a Lambda layer, an ``.npz`` with a pickled
   object array -> refused, with the message; the Lambda's code never runs.

All files live in a temporary folder; the real models and the real MNIST cache are
only read.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from mnist_cnn import paths
from mnist_cnn._io import sha256_file
from mnist_cnn.shapes import INPUT_SHAPE, NUM_CLASSES

# Root ignores directory permissions through these capabilities; a child started
# without them in its bounding set is held to the permission bits like anyone.
DROP_CAPS = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"]


# --------------------------------------------------------------------------- helpers


class ProcessOutput:
    """Collects a subprocess' combined output in a background thread (progress bars
    use carriage returns, so it reads raw chunks, not lines)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.buf, self.lock = proc, bytearray(), threading.Lock()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        fd = self.proc.stdout.fileno()
        while chunk := os.read(fd, 4096):
            with self.lock:
                self.buf += chunk

    def text(self) -> str:
        with self.lock:
            return self.buf.decode(errors="replace")

    def wait_for(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"never saw {needle!r}; output:\n{self.text()[-3000:]}")
            time.sleep(0.1)


def interrupt_training(command: str, out: Path, extra: list[str], progress_marker: str,
                       after: float = 1.0, timeout: float = 240,
                       sig: signal.Signals = signal.SIGINT) -> tuple[int, str, float]:
    """Start ``python -m mnist_cnn <command> --out <out> <extra>``, wait until its
    progress output shows ``progress_marker`` (i.e. mid-epoch), wait ``after`` s
    more, send ``sig``: SIGINT is what Ctrl-C sends, SIGTERM what a hosting
    platform sends to stop a job.

    Returns (exit status, combined output, seconds from the signal to exit).
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # A shell starts background jobs with SIGINT ignored, and Python then never raises
    # KeyboardInterrupt; give the child the default disposition, as a terminal would.
    proc = subprocess.Popen([sys.executable, "-m", "mnist_cnn", command, "--out", str(out),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    output = ProcessOutput(proc)
    try:
        output.wait_for(progress_marker, timeout)
        time.sleep(after)
        if proc.poll() is not None:
            raise AssertionError("training finished before it could be interrupted")
        t0 = time.monotonic()
        proc.send_signal(sig)
        code = proc.wait(timeout=60)
        stopped = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output.thread.join(timeout=5)
    return code, output.text(), stopped


def folder_hashes(folder: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}


def place_previous_model(folder: Path, name: str) -> dict[str, str]:
    """A stand-in 'previous' model and card; returns the folder's {name: SHA-256}."""
    model = folder / name
    model.write_bytes(b"previous model bytes " * 1000)
    paths.card_path(model).write_text('{"model": "previous", "test_accuracy": 0.99}\n')
    return folder_hashes(folder)


def _report(rows: list[dict], name: str, ok: bool, what: str, **figures) -> None:
    row = {"scenario": name, "ok": bool(ok), "what": what, **figures}
    rows.append(row)
    figs = ", ".join(f"{k} {v}" for k, v in figures.items())
    print(f"[{'ok' if ok else 'FAIL'}] {name}: {what}" + (f" ({figs})" if figs else ""),
          flush=True)


# --------------------------------------------------------------------------- scenarios


def app_model_faults(model: Path, work: Path, rows: list[dict]) -> None:
    """Scenario 1: corrupt / delete / restore the model under a running app (browser)."""
    from mnist_cnn.canvas import stroke_points
    from playwright.sync_api import sync_playwright

    from app.browser_driver import (
        CANVAS,
        METRIC_VALUE,
        AppServer,
        draw_strokes,
        launch_browser,
        open_app,
    )

    served = work / "served.keras"
    shutil.copyfile(model, served)
    error_box = '[data-testid="stAlertContentError"]'

    def predict(page, digit=7) -> str:
        box = open_app(page, server.url)
        draw_strokes(page, box, stroke_points(digit, 50, 40, 170))
        metric = page.locator(METRIC_VALUE)
        metric.wait_for(state="visible", timeout=60_000)
        return metric.inner_text().strip()

    def message(page) -> str:
        page.reload()
        alert = page.locator(error_box).first
        alert.wait_for(state="visible", timeout=60_000)
        return alert.inner_text().strip()

    with sync_playwright() as pw:
        browser = launch_browser(pw)
        try:
            with AppServer(model=served, log_path=work / "app.log") as server:
                page = browser.new_page(viewport={"width": 1300, "height": 1000})
                t0 = time.perf_counter()
                shown = predict(page)
                _report(rows, "app: baseline", shown == "7", f"drew a 7, app shows {shown}",
                        seconds=round(time.perf_counter() - t0, 2))

                old = served.stat().st_mtime_ns
                served.write_bytes(model.read_bytes()[:5000])  # half-written deploy
                os.utime(served, ns=(old + 10**9, old + 10**9))
                t0 = time.perf_counter()
                msg = message(page)
                _report(rows, "app: model corrupted", "Could not" in msg and "train-keras" in msg,
                        f"message: {msg[:140]!r}",
                        seconds_to_message=round(time.perf_counter() - t0, 2))

                served.unlink()
                t0 = time.perf_counter()
                msg = message(page)
                _report(rows, "app: model deleted", "No model file" in msg,
                        f"message: {msg[:140]!r}",
                        seconds_to_message=round(time.perf_counter() - t0, 2))

                tmp = work / ".served.keras.tmp"
                shutil.copyfile(model, tmp)
                os.replace(tmp, served)  # the good file returns, atomically
                os.utime(served, ns=(old + 2 * 10**9, old + 2 * 10**9))
                # The user presses "Try again" under the error (no page reload, no restart).
                t0 = time.perf_counter()
                page.get_by_role("button", name="Try again").click()
                canvas = page.locator(CANVAS)
                canvas.wait_for(state="visible", timeout=60_000)
                draw_strokes(page, canvas.bounding_box(), stroke_points(3, 50, 40, 170))
                metric = page.locator(METRIC_VALUE)
                metric.wait_for(state="visible", timeout=60_000)
                shown = metric.inner_text().strip()
                _report(rows, "app: good model back", shown == "3" and server.proc.poll() is None,
                        f"'Try again' pressed, same process, no restart; drew a 3, app shows "
                        f"{shown}", seconds_to_recover=round(time.perf_counter() - t0, 2))
        finally:
            browser.close()


def training_interrupts(work: Path, rows: list[dict]) -> None:
    """Scenario 2: Ctrl-C mid-epoch in both trainers."""
    for command, name, extra, marker, after in [
        # Small batches keep an epoch long enough to land inside it.
        ("train-numpy", "numpy_cnn.npz", ["--limit", "2000", "--epochs", "3", "--batch-size", "4"],
         "epoch 1/3", 0.3),
        ("train-keras", "cnn_model.keras", ["--limit", "3000", "--epochs", "3",
                                            "--batch-size", "8"], "Epoch 1/3", 1.0),
    ]:
        folder = work / command
        folder.mkdir()
        before = place_previous_model(folder, name)
        code, out, stopped = interrupt_training(command, folder / name, extra, marker, after)
        after_hashes = folder_hashes(folder)
        leftovers = sorted(set(p.name for p in folder.iterdir()) - set(before))
        ok = code == 130 and after_hashes == before and not leftovers and "Traceback" not in out
        last = [ln for ln in out.replace("\r", "\n").splitlines() if ln.strip()][-1]
        _report(rows, f"Ctrl-C in {command}", ok,
                f"exit {code}, last line {last.strip()[:80]!r}, previous model+card "
                f"{'identical' if after_hashes == before else 'CHANGED'}, "
                f"temp files left: {leftovers or 'none'}",
                seconds_sigint_to_exit=round(stopped, 2))


def cache_corruption(work: Path, rows: list[dict]) -> None:
    """Scenario 3: one byte flipped in a copy of the cache -> replaced on next load."""
    from mnist_cnn import data

    real = data.fetch_mnist(progress=False).cache_dir
    cache = work / "cache"
    cache.mkdir()
    blobs = {n: (real / n).read_bytes() for n in data.FILES}
    for n, b in blobs.items():
        (cache / n).write_bytes(b)
    victim = "train-images-idx3-ubyte"
    b = bytearray(blobs[victim])
    b[len(b) // 2] ^= 0x01
    (cache / victim).write_bytes(bytes(b))
    good = data.Source("a good copy", lambda names: {n: blobs[n] for n in names})
    t0 = time.perf_counter()
    report = data.fetch_mnist(cache, sources=[good], progress=False)
    secs = time.perf_counter() - t0
    ok = report.replaced == [victim] and set(data.verify_cache(cache).values()) == {"ok"}
    _report(rows, "cache: one flipped byte", ok,
            f"replaced {report.replaced} from {report.source}; cache verifies",
            seconds_verify_and_replace=round(secs, 2))


def read_only_cache(work: Path, rows: list[dict]) -> None:
    """Scenario 4: a cache directory that cannot be written."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        _report(rows, "cache: read-only directory", True, "skipped (root without setpriv)")
        return
    ro = work / "ro-cache"
    ro.mkdir()
    ro.chmod(0o555)
    prefix = DROP_CAPS if os.geteuid() == 0 else []
    env = {k: v for k, v in os.environ.items() if k != "MNIST_CNN_DATA"}
    res = subprocess.run([*prefix, sys.executable, "-m", "mnist_cnn", "data", "--cache-dir",
                          str(ro)], capture_output=True, text=True, env=env, timeout=120)
    ro.chmod(0o755)
    msg = res.stderr.strip().splitlines()[0] if res.stderr.strip() else ""
    _report(rows, "cache: read-only directory", res.returncode == 1 and str(ro) in msg,
            f"exit {res.returncode}, message: {msg[:160]!r}")


def unsafe_files(work: Path, rows: list[dict]) -> None:
    """Scenario 5: a Lambda layer in a .keras file, an object array in an .npz."""
    import numpy as np
    from mnist_cnn.backend import import_keras

    keras = import_keras()
    from mnist_cnn.model_files import load_model
    from mnist_cnn.scratch.network import Sequential

    marker = work / "lambda-code-ran"

    def evil(t, _marker=str(marker)):
        open(_marker, "w").close()  # noqa: SIM115 - the side effect is the point
        return t

    path = work / "lambda.keras"
    keras.Sequential([keras.Input(INPUT_SHAPE), keras.layers.Lambda(evil),
                      keras.layers.Flatten(), keras.layers.Dense(NUM_CLASSES)]).save(path)
    marker.unlink(missing_ok=True)  # building it here ran it once, on purpose
    try:
        load_model(path)
        ok, msg = False, "LOADED"
    except ValueError as exc:
        ok, msg = "Lambda" in str(exc), str(exc)
    ok = ok and not marker.exists()
    _report(rows, "unsafe: .keras with a Lambda layer", ok,
            f"refused, code never ran: {msg[:120]!r}")

    npz = work / "pickled.npz"
    np.savez(npz, __architecture__=np.array([{"layers": []}], dtype=object))
    try:
        Sequential.load(npz)
        ok, msg = False, "LOADED"
    except ValueError as exc:
        ok, msg = "allow_pickle" in str(exc) or "not a valid" in str(exc), str(exc)
    _report(rows, "unsafe: .npz with an object array", ok, f"refused: {msg[:120]!r}")


# --------------------------------------------------------------------------- main


def run(model=None, browser: bool = True) -> list[dict]:
    """Run every scenario in a temporary folder; returns one dict per line printed."""
    model = Path(model) if model else paths.default_keras_model()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="mnist-faults-") as tmp:
        work = Path(tmp)
        if browser:
            (work / "app").mkdir()
            app_model_faults(model, work / "app", rows)
        (work / "train").mkdir()
        training_interrupts(work / "train", rows)
        cache_corruption(work, rows)
        read_only_cache(work, rows)
        unsafe_files(work, rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.faults",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a good Keras model to serve "
                        "(default: $MNIST_CNN_MODEL or models/cnn_model.keras)")
    parser.add_argument("--skip-browser", action="store_true",
                        help="skip the app scenario (needs Chromium)")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args(argv)
    rows = run(args.model, browser=not args.skip_browser)
    failed = [r["scenario"] for r in rows if not r["ok"]]
    print(f"Faults: {len(rows) - len(failed)}/{len(rows)} scenarios handled"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    if args.json:
        print(json.dumps(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
