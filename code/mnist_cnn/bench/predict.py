"""``python -m mnist_cnn bench predict``: single-image latency and cold start of
what the app runs.

Measures, for one 28x28 test image passed as the app passes a drawing (a (28, 28)
float image):

- the app's two engines, through :class:`mnist_cnn.predict.Predictor` exactly as
  the app calls them: ``predictor.predict_proba(x, "keras")`` (the Keras model
  behind a ``tf.function`` traced once) and ``predictor.predict_proba(x, "numpy")``
  (the same weights in the from-scratch NumPy network, via the bridge);
- for reference, the plain eager Keras call ``model(x, training=False)``, what a
  server without the traced function would pay (``model.predict`` is slower
  still: it builds a data pipeline per call);
- cold start in a fresh Python process, as the app starts: import +
  ``Predictor.from_file`` (load, check, warm-up trace) + the first prediction, for
  the Keras file and for the ``.npz`` the bridge writes (which imports no
  TensorFlow at all).

Prints median and p95 in milliseconds (:func:`mnist_cnn.bench.stats.summary`) and
a one-line summary. Run it on a quiet machine for honest numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mnist_cnn.bench.stats import summary
from mnist_cnn.notebook import timings

REPEATS = 200
WARMUP = 10

# Cold start as the app starts: import, Predictor.from_file (load, check, warm-up),
# first prediction. The same script for both files: the file decides the engine.
_COLD = """
import time, sys
t0 = time.perf_counter()
import numpy as np
from mnist_cnn.predict import Predictor
t1 = time.perf_counter()
predictor = Predictor.from_file(sys.argv[1])
t2 = time.perf_counter()
x = np.load(sys.argv[2])
p = predictor.predict_proba(x)
t3 = time.perf_counter()
print(int(p.argmax()), t1 - t0, t2 - t1, t3 - t2)
"""


def _time_calls(fn, x, repeats, warmup=WARMUP):
    """Per-call wall times in ms (after ``warmup`` untimed calls)."""
    return timings(lambda: fn(x), repeats, warmup) * 1e3


def _stats(ms):
    s = summary(ms)
    return {"median_ms": s["median"], "p95_ms": s["p95"], "n": s["n"]}


def _cold(script, model_path, x_path, runs=3):
    """Run ``script`` in fresh interpreters; return the best wall time and its phases."""
    env = dict(os.environ)
    best = None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", script, str(model_path), str(x_path)],
                             capture_output=True, text=True, env=env, check=False)
        wall = time.perf_counter() - t0
        if out.returncode != 0:
            raise RuntimeError(f"cold-start subprocess failed:\n{out.stderr[-2000:]}")
        label, imp, load, first = out.stdout.split()[-4:]
        run = {"wall_s": wall, "import_s": float(imp), "load_s": float(load),
               "first_prediction_s": float(first), "label": int(label)}
        if best is None or wall < best["wall_s"]:
            best = run
    return best


def run(model_path=None, repeats=REPEATS, seed=0, cold_runs=3, cache_dir=None):
    """Measure everything; returns a JSON-able dict of figures."""
    from mnist_cnn import bridge
    from mnist_cnn.data import load_mnist, prepare_images
    from mnist_cnn.model_files import is_numpy_model, load_model, resolve_model_path
    from mnist_cnn.predict import Predictor

    model_path = resolve_model_path(model_path)
    if is_numpy_model(model_path):
        # said before TensorFlow loads (seconds), not after
        raise ValueError(
            f"bench predict compares a Keras model with its weights in the NumPy network: "
            f"--model takes a Keras model (.keras or .h5), and {model_path} is a NumPy model "
            f"(.npz). For a .npz, `python -m mnist_cnn predict --model {model_path} IMAGE` "
            f"and `bench canvas --model {model_path}` work.")
    model = load_model(model_path)
    predictor = Predictor(model, model_path)       # what the app holds, warmed up
    _, (x_test, y_test) = load_mnist(cache_dir, progress=False)
    i = int(np.random.default_rng(seed).integers(len(x_test)))
    x = prepare_images(x_test[i:i + 1])[0, :, :, 0]  # (28, 28) float32, as the app passes

    p_keras = predictor.predict_proba(x, "keras")
    p_numpy = predictor.predict_proba(x, "numpy")
    res = {
        "model": str(model_path), "image_index": i, "label": int(y_test[i]),
        "app_keras_engine": _stats(_time_calls(
            lambda t: predictor.predict_proba(t, "keras"), x, repeats)),
        "app_numpy_engine": _stats(_time_calls(
            lambda t: predictor.predict_proba(t, "numpy"), x, repeats)),
        "keras_eager_call": _stats(_time_calls(
            lambda t: np.asarray(model(t[None, :, :, None], training=False)), x, repeats)),
        "max_abs_prob_difference": float(np.abs(p_keras - p_numpy).max()),
        "same_prediction": bool(p_keras.argmax() == p_numpy.argmax()),
    }
    with tempfile.TemporaryDirectory() as tmp:
        x_path = Path(tmp) / "x.npy"
        np.save(x_path, x)
        npz = bridge.from_keras(model).save(Path(tmp) / "bridged.npz")
        res["cold_start_keras"] = _cold(_COLD, model_path, x_path, cold_runs)
        res["cold_start_numpy"] = _cold(_COLD, npz, x_path, cold_runs)
    return res


def format_report(res):
    def row(name, s):
        return f"  {name:<34s} median {s['median_ms']:7.2f} ms   p95 {s['p95_ms']:7.2f} ms"

    def cold(name, c):
        return (f"  {name:<34s} {c['wall_s']:6.2f} s  (import {c['import_s']:.2f} s, "
                f"load {c['load_s']:.2f} s, first prediction {c['first_prediction_s'] * 1e3:.0f}"
                " ms)")

    return "\n".join([
        f"Single-image latency, {res['app_keras_engine']['n']} calls each "
        f"(model {Path(res['model']).name}, test image #{res['image_index']}, "
        f"digit {res['label']}):",
        row("the app's keras engine", res["app_keras_engine"]),
        row("the app's numpy engine", res["app_numpy_engine"]),
        row("(reference: eager model(x))", res["keras_eager_call"]),
        "Cold start (new process: import + Predictor.from_file + first prediction, "
        "best of runs):",
        cold("Keras (.keras)", res["cold_start_keras"]),
        cold("NumPy scratch (.npz)", res["cold_start_numpy"]),
        f"Same prediction: {res['same_prediction']}; max |prob difference| "
        f"{res['max_abs_prob_difference']:.1e}",
    ])


def main(args: argparse.Namespace) -> int:
    res = run(model_path=args.model, repeats=args.repeats or REPEATS, seed=args.seed,
              cache_dir=getattr(args, "cache_dir", None))
    print(format_report(res))
    if getattr(args, "json", False):
        print(json.dumps(res))
    print(f"bench predict: the app's keras engine "
          f"{res['app_keras_engine']['median_ms']:.2f} ms, numpy engine "
          f"{res['app_numpy_engine']['median_ms']:.2f} ms median per image; cold start "
          f"{res['cold_start_keras']['wall_s']:.1f} s (Keras) / "
          f"{res['cold_start_numpy']['wall_s']:.1f} s (NumPy)")
    return 0
