"""The canvas benchmark's simulation and figures (small; the full run is `bench canvas`)."""

import argparse

import numpy as np
import pytest
from mnist_cnn.bench.canvas import canvases, main, run
from mnist_cnn.canvas import CANVAS, HEIGHT_RANGE, simulate_canvas

from tests._helpers_app import committed_or_small_model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return committed_or_small_model(tmp_path_factory.getbasetemp())


def test_simulated_canvas_geometry_and_seed(mnist):
    _, (x_test, _) = mnist
    a = list(canvases(x_test[:50], seed=5))         # the benchmark's canvases
    b = [simulate_canvas(x, rng) for rng in [np.random.default_rng(5)]
         for x in x_test[:50]]                         # one generator, digit after digit
    for img, again in zip(a, b, strict=True):
        np.testing.assert_array_equal(img, again)
        assert img.shape == (CANVAS, CANVAS) and img.dtype == np.uint8
        rows = np.flatnonzero(img.any(axis=1))
        height = (rows[-1] - rows[0] + 1) / CANVAS
        # Height within the range (plus the few pixels thickening adds; wide digits shrink).
        assert height <= HEIGHT_RANGE[1] + 0.04
    heights = [np.ptp(np.flatnonzero(img.any(axis=1))) / CANVAS for img in a]
    assert min(heights) < 0.45 and max(heights) > 0.7  # sizes really vary
    centres = [np.mean(np.flatnonzero(img.any(axis=0))) for img in a]
    assert np.ptp(centres) > 60  # and so do positions


def test_ours_beats_naive(model_path, mnist):
    from mnist_cnn.predict import Predictor

    _, (x_test, y_test) = mnist
    res = run(Predictor.from_file(model_path), x_test[:300], y_test[:300], seed=0,
              progress=False)
    assert res["n"] == 300
    assert res["accuracy_ours"] >= 0.93
    assert res["accuracy_ours"] > res["accuracy_naive"] + 0.1


def test_cli_main_prints_summary(model_path, capsys):
    args = argparse.Namespace(model=str(model_path), limit=50, seed=1, json=True,
                              cache_dir=None, repeats=None, batch_size=None)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "MNIST-style preprocessing" in out and "naive resize" in out
    assert '"accuracy_ours"' in out
