"""A small run of the load benchmark: concurrent browser sessions on one app process.

The full figures (N = 1, 5, 20 for 60 s) come from ``python -m mnist_cnn.bench.load``;
this checks the behaviour behind them: every session gets its predictions, no
errors, and the process loads the model once however many sessions there are.
"""

from __future__ import annotations

import pytest

from tests._browser import require_chromium
from tests._helpers_app import committed_or_small_model


@pytest.mark.browser
@pytest.mark.slow
def test_concurrent_sessions_share_one_model_and_get_predictions(tmp_path_factory):
    require_chromium()
    from mnist_cnn.bench.load import measure

    model = committed_or_small_model(tmp_path_factory.getbasetemp())
    log = tmp_path_factory.mktemp("load") / "server.log"
    res = measure(sessions=(1, 3), seconds=8, browsers=2, model=model, log_path=log)
    assert res["model_loads"] == 1, log.read_text()[-2000:]
    for level in res["levels"]:
        assert level["errors"] == 0, level["error_samples"]
        assert level["predictions"] >= level["sessions"], level
        assert level["server_rss_peak_mb"] > 0
