"""The chapters' timing helper for comparisons: best_of_each takes the calls in turn."""

from __future__ import annotations

import mnist_cnn.notebook as nb


def test_best_of_each_keeps_each_function_s_fastest_call(monkeypatch):
    a, b = (lambda: None), (lambda: None)
    times = {a: iter([5, 3, 4]), b: iter([7, 8, 2])}         # seconds, call by call
    monkeypatch.setattr(nb, "timings", lambda fn, repeat, warmup: [next(times[fn])])
    assert nb.best_of_each([a, b], repeat=3, warmup=0) == [3.0, 2.0]


def test_best_of_each_times_one_call_of_each_per_round():
    calls = []
    fns = [lambda: calls.append("a"), lambda: calls.append("b")]
    nb.best_of_each(fns, repeat=3, warmup=1)
    assert calls == ["a", "b"] + ["a", "b"] * 3        # warm-ups, then one of each per round
