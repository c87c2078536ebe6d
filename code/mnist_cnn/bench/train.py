"""``python -m mnist_cnn bench train``: one training epoch of the course
architecture in the plain NumPy engine, in the fast one (the speed layer,
:mod:`mnist_cnn.scratch.fast`) and in Keras, same data, same batch size, same
optimiser (Adam), in one run; prints seconds per epoch and each NumPy path's
ratio to Keras.

Every engine gets a warm-up first (Keras traces and compiles its training step on
the first call; NumPy/BLAS allocate their buffers), which is not timed. The
warm-up ends with a partial batch of the same size as the timed epoch's last
one, so Keras has also traced that shape; otherwise it retraces inside the timed
epoch, and that epoch times the tracing too.
Augmentation is off for both so each epoch does exactly the same work.

Each engine then trains ``REPEAT`` timed epochs and the fastest counts (as
``timeit`` does: interference only ever adds time): on a small machine one Keras
epoch can take twice as long as the next, back to back in one process, so a
single epoch per engine would make the ratio a matter of luck. The command prints
every epoch's time, so the spread is seen, not assumed.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from mnist_cnn.data import prepare_images
from mnist_cnn.keras_model import build_twin
from mnist_cnn.scratch.fast import FastEngine
from mnist_cnn.scratch.train import BATCH_SIZE, DROPOUT, LR, build_model, fit

WARMUP_BATCHES = 4
REPEAT = 3


def warmup_size(n: int, batch_size: int) -> int:
    """Images for the warm-up: a few full batches plus a last batch of the same
    size as the last batch of an epoch over ``n`` images (at most ``n``)."""
    return min(n, WARMUP_BATCHES * batch_size + n % batch_size)


def run(limit: int | None = None, batch_size: int = BATCH_SIZE, seed: int = 0,
        cache_dir=None, repeat: int = REPEAT) -> dict:
    from mnist_cnn.data import load_mnist

    (x_train, y_train), _ = load_mnist(cache_dir, progress=False)
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
    x = prepare_images(x_train)
    y = y_train.astype(np.int64)
    n_warm = warmup_size(len(x), batch_size)

    numpy = {}
    for path, fast in (("plain", False), ("fast", True)):
        net = build_model(seed)
        engine = FastEngine(net) if fast else net
        fit(net, x[:n_warm], y[:n_warm], epochs=1, batch_size=batch_size, seed=seed,
            progress=False, engine=engine)
        seconds, hist = [], []
        for r in range(repeat):
            t0 = time.perf_counter()
            hist.append(fit(net, x, y, epochs=1, batch_size=batch_size, seed=seed + r,
                            progress=False, engine=engine))
            seconds.append(time.perf_counter() - t0)
        numpy[path] = (seconds, hist[0]["loss"][0])

    model = build_twin(DROPOUT, LR, seed)
    model.fit(x[:n_warm], y[:n_warm], batch_size=batch_size, epochs=1, verbose=0)
    t_keras, hist_k = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        hist_k.append(model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0,
                                shuffle=True))
        t_keras.append(time.perf_counter() - t0)

    from mnist_cnn.backend import import_keras, import_tensorflow

    keras, tf = import_keras(), import_tensorflow()

    result = {"images": int(len(x)), "batch_size": batch_size, "params": net.count_params(),
              "keras_params": int(model.count_params()),
              "keras_s_per_epoch": min(t_keras), "keras_epochs_s": t_keras,
              "keras_epoch_loss": float(hist_k[0].history["loss"][0])}
    for path, (seconds, loss) in numpy.items():
        result.update({f"{path}_s_per_epoch": min(seconds), f"{path}_epochs_s": seconds,
                       f"ratio_{path}_over_keras": min(seconds) / min(t_keras),
                       f"{path}_epoch_loss": loss})
    return {**result,
            "versions": {"numpy": np.__version__, "tensorflow": tf.__version__,
                         "keras": keras.__version__}}


def _list(seconds) -> str:
    return ", ".join(f"{t:.1f}" for t in seconds) + " s"


def format_results(r: dict) -> str:
    lines = [f"bench train: one epoch, {r['images']:,} images, batch {r['batch_size']}, Adam, "
             f"same architecture ({r['params']:,} params; Keras {r['keras_params']:,})"]
    for path, label in (("plain", "NumPy plain (Sequential)"), ("fast", "NumPy fast (FastEngine)")):
        lines.append(f"  {label:32s} {r[f'{path}_s_per_epoch']:6.1f} s/epoch  (best of "
                     f"{_list(r[f'{path}_epochs_s'])}; first epoch loss "
                     f"{r[f'{path}_epoch_loss']:.4f})")
    keras_label = f"Keras {r['versions']['keras']} / TF {r['versions']['tensorflow']}"
    lines.append(f"  {keras_label:32s} {r['keras_s_per_epoch']:6.1f} s/epoch  (best of "
                 f"{_list(r['keras_epochs_s'])}; first epoch loss {r['keras_epoch_loss']:.4f})")
    lines.append(f"  ratio plain / Keras: {r['ratio_plain_over_keras']:.2f}")
    lines.append(f"  ratio fast / Keras:  {r['ratio_fast_over_keras']:.2f}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    batch_size = args.batch_size or BATCH_SIZE
    if batch_size < 1 or (args.limit is not None and args.limit < 1):
        raise ValueError(f"batch size and --limit must be positive, got {batch_size}, "
                         f"{args.limit}")
    results = run(args.limit, batch_size, args.seed, getattr(args, "cache_dir", None))
    print(format_results(results))
    if args.json:
        print(json.dumps(results))
    return 0
