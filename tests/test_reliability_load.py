"""A small run of the load benchmark: concurrent browser sessions on one app process.

The full figures (N = 1, 5, 20 for 60 s) come from ``python -m benchmarks.load``;
this checks the behaviour behind them: every session gets its predictions (each
the digit it drew), no errors, and the process loads the model once however many
sessions there are.
"""

from __future__ import annotations

import pytest
from mnist_cnn.numerics import assert_close

from tests._browser import require_chromium
from tests._helpers_app import committed_or_small_model


@pytest.mark.browser
@pytest.mark.slow
def test_concurrent_sessions_share_one_model_and_get_predictions(tmp_path_factory):
    require_chromium()
    from benchmarks.load import measure

    model = committed_or_small_model(tmp_path_factory.getbasetemp())
    log = tmp_path_factory.mktemp("load") / "server.log"
    # A fixed number of digits per session, not a time window: how many fit into a
    # few seconds depends on the machine, what each session must get does not.
    res = measure(sessions=(3,), rounds=2, browsers=2, model=model, log_path=log)
    assert res["model_loads"] == 1, log.read_text()[-2000:]
    [level] = res["levels"]
    assert level["errors"] == 0, (level["error_samples"], log.read_text()[-2000:])
    # Every session got both of its predictions, and each showed the digit that
    # session drew (sessions draw different digits at the same time: no cross-talk).
    assert level["per_session"] == [2, 2, 2], level
    assert level["misreads"] == 0, level
    assert level["predictions"] == 6
    assert level["median_latency_s"] > 0 and level["median_draw_s"] > 0
    assert level["server_rss_peak_mb"] > 0


def test_one_predictor_shared_by_many_threads_gives_the_same_answers(tmp_path_factory):
    """The app shares one Predictor between all sessions (one Streamlit thread each):
    concurrent first use of both engines and of the feature maps must be safe."""
    from concurrent.futures import ThreadPoolExecutor

    from mnist_cnn.predict import Predictor
    from mnist_cnn.preprocess import to_mnist

    from tests._helpers_app import render_digit

    model = committed_or_small_model(tmp_path_factory.getbasetemp())
    xs = [to_mnist(render_digit(d, 40 + 10 * d, 30, 170)) for d in (0, 1, 2, 3, 4, 7)]
    shared = Predictor.from_file(model)      # used concurrently, cold NumPy engine
    reference = Predictor.from_file(model)   # used sequentially

    def job(k):
        x, engine = xs[k % len(xs)], ("keras", "numpy")[k % 2]
        return k, shared.predict_proba(x, engine), shared.feature_maps(x, engine)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(job, range(48)))
    for k, probs, maps in results:
        x, engine = xs[k % len(xs)], ("keras", "numpy")[k % 2]
        assert_close(probs, reference.predict_proba(x, engine), "concurrent vs single predictions")
        ref_maps = reference.feature_maps(x, engine)
        assert [n for n, _ in maps] == [n for n, _ in ref_maps]
        for (_, a), (_, b) in zip(maps, ref_maps, strict=True):
            assert_close(a, b, "concurrent vs single feature maps")
