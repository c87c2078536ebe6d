"""Canvas-simulated MNIST: does our preprocessing read digits drawn anywhere?

``python -m mnist_cnn bench canvas [--limit N] [--seed S] [--model PATH]``

Each MNIST test digit is pasted onto a 280x280 canvas the way a person might
draw it in the app: scaled so its height is 30-90 % of the canvas, placed at a
random position, its strokes thickened to a canvas-brush-like width. The same
model then reads it twice - after :func:`mnist_cnn.preprocess.to_mnist` (crop,
fit 20x20, centre of mass) and after :func:`mnist_cnn.preprocess.naive_resize`
(the whole canvas squashed to 28x28) - and we report both accuracies, next to
the model's accuracy on the original 28x28 digits. The simulation itself is
library code: :mod:`mnist_cnn.canvas`.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from mnist_cnn.canvas import simulate_canvas
from mnist_cnn.shapes import IMAGE_SHAPE


def canvases(x_test: np.ndarray, seed: int = 0):
    """The benchmark's canvases, one per digit of ``x_test`` (uint8 (N, 28, 28)), in
    order: one generator seeded once with ``seed`` and drawn from digit after digit,
    so the same digits and seed give the same canvases. Yields (280, 280) images."""
    rng = np.random.default_rng(seed)
    for digit in x_test:
        yield simulate_canvas(digit, rng)


def run(predictor, x_test: np.ndarray, y_test: np.ndarray, seed: int = 0,
        progress: bool = True, batch: int = 500) -> dict:
    """Accuracy of ``predictor`` on canvas-simulated digits, ours vs naive.

    Inputs:
    - predictor: a :class:`mnist_cnn.predict.Predictor`.
    - x_test: uint8 (N, 28, 28); y_test: (N,) labels.

    Returns a dict of figures: n, accuracy_ours, accuracy_naive, accuracy_mnist,
    seconds, seed.
    """
    from tqdm import tqdm

    from mnist_cnn.preprocess import naive_resize, to_mnist

    n = len(x_test)
    ours = np.zeros((n, *IMAGE_SHAPE), np.float32)
    naive = np.zeros((n, *IMAGE_SHAPE), np.float32)
    t0 = time.perf_counter()
    for i, canvas in enumerate(tqdm(canvases(x_test, seed), total=n, desc="canvas digits",
                                    disable=not progress, unit="img", mininterval=1.0)):
        a, b = to_mnist(canvas), naive_resize(canvas)
        if a is not None:
            ours[i] = a
        if b is not None:
            naive[i] = b

    def accuracy(x):
        pred = np.concatenate([predictor.predict(x[j:j + batch]) for j in range(0, n, batch)])
        return float(np.mean(pred == y_test))

    return {
        "n": n, "seed": seed,
        "accuracy_ours": accuracy(ours),
        "accuracy_naive": accuracy(naive),
        "accuracy_mnist": accuracy(x_test.astype(np.float32) / 255.0),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(args: argparse.Namespace) -> int:
    """``python -m mnist_cnn bench canvas``: print ours vs naive accuracy (one run)."""
    from mnist_cnn.data import load_mnist
    from mnist_cnn.predict import Predictor

    predictor = Predictor.from_file(args.model)
    _, (x_test, y_test) = load_mnist(getattr(args, "cache_dir", None), progress=False)
    if args.limit:
        x_test, y_test = x_test[:args.limit], y_test[:args.limit]
    res = run(predictor, x_test, y_test, seed=args.seed)
    res["model"] = str(predictor.path)
    print(f"Canvas-simulated MNIST ({res['n']:,} test digits, seed {res['seed']}, "
          f"model {predictor.path.name}): MNIST-style preprocessing "
          f"{res['accuracy_ours']:.2%} vs naive resize {res['accuracy_naive']:.2%} "
          f"(original 28x28: {res['accuracy_mnist']:.2%}; {res['seconds']} s)")
    if args.json:
        print(json.dumps(res))
    return 0
