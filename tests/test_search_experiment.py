"""The search experiment (mnist_cnn.experiments.search): the points a grid and a random
search try, what one trial records, that a seed repeats, what a search chose, and the
committed record's checks."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from mnist_cnn import experiments
from mnist_cnn.experiments import SEARCH_BOX, SEARCH_TRIALS, search_points


def _in_box(points):
    return all(lo <= p[key] <= hi for p in points for key, (lo, hi) in SEARCH_BOX.items())


def test_the_grid_is_the_centres_of_equal_log_slices_whatever_the_seed():
    grid = search_points("grid", 0)
    assert len(grid) == SEARCH_TRIALS and grid == search_points("grid", 7) and _in_box(grid)
    for key, (lo, hi) in SEARCH_BOX.items():
        values = sorted({round(np.log10(p[key]), 9) for p in grid})
        width = (np.log10(hi) - np.log10(lo)) / 3
        np.testing.assert_allclose(values, np.log10(lo) + width * np.array([0.5, 1.5, 2.5]))
    # every combination once
    assert len({(p["lr"], p["weight_decay"]) for p in grid}) == SEARCH_TRIALS


def test_random_points_are_drawn_from_the_seed_and_try_a_value_per_run():
    points = search_points("random", 3)
    assert points == search_points("random", 3) and points != search_points("random", 4)
    assert len(points) == SEARCH_TRIALS and _in_box(points)
    for key in SEARCH_BOX:
        assert len({p[key] for p in points}) == SEARCH_TRIALS
    # log-uniform: over many draws each decade of the learning rate's range gets its share
    many = search_points("random", 0, trials=3000)
    decades = np.floor(np.log10([p["lr"] for p in many]))
    shares = np.bincount((decades + 4).astype(int), minlength=3) / len(many)
    np.testing.assert_allclose(shares, [1 / 3] * 3, atol=0.04)


def test_bad_searches_are_refused():
    with pytest.raises(ValueError, match="'grid' or 'random'"):
        search_points("bayesian", 0)
    with pytest.raises(ValueError, match="power of 2"):
        search_points("grid", 0, trials=8)


@pytest.fixture(scope="module")
def small():
    (x, y), (xd, yd) = experiments.experiment_data(100, 80)
    return x, y, xd[:40], yd[:40], (xd[40:], yd[40:])


def test_a_trial_records_its_point_and_every_epoch_and_repeats_with_its_seed(small):
    point = {"lr": 3e-3, "weight_decay": 1e-3}
    a = experiments.search_trial(point, 5, *small, epochs=2)
    b = experiments.search_trial(point, 5, *small, epochs=2)
    c = experiments.search_trial(point, 6, *small, epochs=2)
    assert {k: a[k] for k in point} == point
    for key in ("loss", "val", "holdout"):
        assert len(a[key]) == 2 and a[key] == b[key]
    assert all(0 <= v <= 1 for v in a["val"] + a["holdout"])
    assert a["val"] != c["val"] or a["loss"] != c["loss"]
    # the holdout score is the network's accuracy on those digits
    assert all(v * 40 == round(v * 40) for v in a["holdout"])


def test_what_a_search_chose_is_its_best_validation_run():
    runs = [{"seed": s, "trials": [{"lr": lr, "weight_decay": 0.1, "val": [0.5, v],
                                    "holdout": [0.5, h]}
                                   for lr, v, h in ((1e-3, 0.90, 0.80), (1e-2, 0.95, 0.70),
                                                    (1e-4, 0.95, 0.99))]}
            for s in range(3)]
    best = experiments.search_best({"runs": {"grid": runs}}, "grid")
    # the highest last-epoch validation accuracy, the first of equals
    np.testing.assert_array_equal(best["lr"], [1e-2] * 3)
    np.testing.assert_array_equal(best["holdout"], [0.70] * 3)
    np.testing.assert_array_equal(best["val"], [0.95] * 3)


@pytest.fixture(scope="module")
def record():
    return experiments.load("search")


def test_the_record_holds_both_searches_from_every_seed(record):
    assert record["seeds"] == list(experiments.SEARCH_SEEDS)
    for name in experiments.SEARCHES:
        for run in record["runs"][name]:
            assert len(run["trials"]) == SEARCH_TRIALS
            assert all(len(t["val"]) == experiments.SEARCH_EPOCHS for t in run["trials"])
        best = experiments.search_best(record, name)
        assert best["val"].shape == (len(record["seeds"]),)


def test_a_record_with_other_points_is_refused(record, tmp_path):
    import json

    bad = copy.deepcopy(record)
    bad["runs"]["random"][0]["trials"][0]["lr"] *= 1.001
    path = tmp_path / "search.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="not the points search_points gives"):
        experiments.load("search", path)
