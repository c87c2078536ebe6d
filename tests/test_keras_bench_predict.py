"""bench predict: runs end to end and reports consistent figures (no timing asserts)."""

from __future__ import annotations

import numpy as np
from mnist_cnn import keras_model as km
from mnist_cnn.backend import import_keras
from mnist_cnn.bench import predict as bench
from mnist_cnn.numerics import tolerance

keras = import_keras()


def test_bench_predict_reports_both_engines(tmp_path):
    keras.utils.set_random_seed(0)
    model = km.build_model(conv_filters=(4,), dense_units=8)
    path = tmp_path / "m.keras"
    model.save(path)
    res = bench.run(model_path=path, repeats=5, seed=1, cold_runs=1)
    for key in ("app_keras_engine", "app_numpy_engine", "keras_eager_call"):
        assert res[key]["n"] == 5 and 0 < res[key]["median_ms"] <= res[key]["p95_ms"]
    # Both engines, and both cold starts, give the same digit for the same image.
    # probabilities sum to 1, so the largest is >= 0.1: an absolute difference within
    # 0.1 x the float32 tolerance is within the tolerance relative to the largest value
    assert res["same_prediction"]
    assert res["max_abs_prob_difference"] <= 0.1 * tolerance(np.float32)
    assert res["cold_start_keras"]["label"] == res["cold_start_numpy"]["label"]
    text = bench.format_report(res)
    assert "median" in text and "Cold start" in text
