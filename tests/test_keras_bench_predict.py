"""bench predict: runs end to end and reports consistent figures (no timing asserts)."""

from __future__ import annotations

import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("mnist_cnn.scratch.network")

from mnist_cnn import keras_model as km  # noqa: E402
from mnist_cnn.bench import predict as bench  # noqa: E402


def test_bench_predict_reports_both_engines(tmp_path):
    keras.utils.set_random_seed(0)
    model = km.build_model(conv_filters=(4,), dense_units=8)
    path = tmp_path / "m.keras"
    model.save(path)
    res = bench.run(model_path=path, repeats=5, seed=1, cold_runs=1)
    for key in ("keras_tf_function", "keras_eager_call", "numpy_scratch"):
        assert res[key]["n"] == 5 and 0 < res[key]["median_ms"] <= res[key]["p95_ms"]
    # Both engines, and both cold starts, give the same digit for the same image.
    assert res["same_prediction"] and res["max_abs_prob_difference"] < 1e-5
    assert res["cold_start_keras"]["label"] == res["cold_start_numpy"]["label"]
    text = bench.format_report(res)
    assert "median" in text and "Cold start" in text
