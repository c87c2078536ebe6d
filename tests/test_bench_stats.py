"""One definition of the statistics every benchmark prints."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from mnist_cnn.bench.stats import summary

ROOT = Path(__file__).resolve().parents[1]


def test_summary_of_one_to_a_hundred():
    s = summary(range(1, 101))
    assert s == {"n": 100, "median": 50.5, "p95": pytest.approx(95.05), "max": 100.0}


def test_p95_interpolates_between_ranks_and_ignores_order():
    rng = np.random.default_rng(0)
    v = rng.permutation([10.0, 20.0, 30.0, 40.0, 50.0])
    # rank 0.95 * 4 = 3.8: 40 + 0.8 * (50 - 40)
    assert summary(v)["p95"] == pytest.approx(48.0)
    assert summary(v, digits=1) == {"n": 5, "median": 30.0, "p95": 48.0, "max": 50.0}


def test_no_values_gives_no_statistics():
    assert summary([]) == {"n": 0, "median": None, "p95": None, "max": None}


def test_every_benchmark_uses_it():
    """No benchmark computes a median or percentile of its own."""
    files = [*ROOT.glob("benchmarks/*.py"), *ROOT.glob("code/mnist_cnn/bench/*.py")]
    own = [f"{f.name}: {m.group()}" for f in files if f.name != "stats.py"
           for m in re.finditer(r"statistics\.median|np\.(?:median|percentile|quantile)"
                                r"|def _percentile", f.read_text())]
    assert len(files) > 5 and own == []
