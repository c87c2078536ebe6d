"""experiments.check_rerun: the chapters' check that a committed record is this code's result."""

import copy

import numpy as np
import pytest
from mnist_cnn import experiments
from mnist_cnn.numerics import arithmetic

LABEL = experiments.norm_label("batch norm", experiments.NORM_PROBE_LR)
PROBE = ("probe", "relu", "sd")


@pytest.fixture(scope="module")
def stored():
    return experiments.load("normalisation")


@pytest.fixture
def record(stored):
    """The committed record, as made by this machine's arithmetic."""
    return {**stored, "arithmetic": arithmetic()}


def first_epoch(run: dict) -> dict:
    """What a rerun of one epoch returns: the first epoch's values, the probes so far."""
    probe = {site: {stat: v[:3] for stat, v in run["probe"][site].items()}
             for site in experiments.PROBE_SITES}
    return {"val": run["val"][:1], "loss": run["loss"][:1], "probe": probe}


def nudged(run: dict, key, by) -> dict:
    """A copy of ``run`` with the first value at ``key`` moved by ``by``."""
    run = copy.deepcopy(run)
    *path, last = key if isinstance(key, tuple) else (key,)
    target = run
    for part in path:
        target = target[part]
    target[last] = [float(target[last][0] + by), *target[last][1:]]
    return run


def test_the_record_itself_is_identical(record):
    rerun = first_epoch(record["runs"][LABEL][0])
    said = experiments.check_rerun(record, LABEL, rerun, ["val", "loss", PROBE])
    assert said.startswith("identical to the record, bit for bit")


@pytest.mark.parametrize("key", ["val", "loss", PROBE])
def test_with_the_records_arithmetic_a_last_bit_is_a_different_result(record, key):
    rerun = first_epoch(record["runs"][LABEL][0])
    value = experiments._values(rerun, key)[0]
    moved = nudged(rerun, key, np.nextafter(value, np.inf) - value)
    with pytest.raises(AssertionError, match="not this code's result"):
        experiments.check_rerun(record, LABEL, moved, [key])


@pytest.mark.parametrize("arith", ["0123456789abcdef", None])
def test_other_arithmetic_reports_how_far_the_rerun_landed(record, arith):
    other = {k: v for k, v in record.items() if k != "arithmetic"}
    if arith:
        other["arithmetic"] = arith
    values = [run["val"][0] for run in record["runs"][LABEL]]
    sd = float(np.std(values, ddof=1))
    rerun = nudged(first_epoch(record["runs"][LABEL][0]), "val", 2.5 * sd)
    said = experiments.check_rerun(other, LABEL, rerun, ["val", "loss"])
    assert said.startswith("not compared bit for bit")
    assert "at most 2.50 of the seeds' standard deviation" in said
    assert (arith or "does not name the arithmetic") in said


@pytest.mark.parametrize("arith", ["record's", "other"])
def test_a_diverged_rerun_of_a_finite_record_fails_everywhere(record, arith):
    if arith == "other":
        record = {**record, "arithmetic": "0123456789abcdef"}
    rerun = first_epoch(record["runs"][LABEL][0])
    rerun["loss"] = [None]                  # what a run records when its loss is not finite
    with pytest.raises(AssertionError, match="loss"):
        experiments.check_rerun(record, LABEL, rerun, ["loss"])


def test_a_not_finite_loss_in_both_counts_as_identical():
    runs = [{"seed": s, "loss": [None, 1.0 + s]} for s in range(3)]
    record = {"runs": {"x": runs}, "arithmetic": arithmetic()}
    said = experiments.check_rerun(record, "x", {"loss": [None]}, ["loss"])
    assert said.startswith("identical to the record")


def test_the_arithmetic_is_named_by_numpy_alone_and_is_stable():
    assert arithmetic() == arithmetic() and len(arithmetic()) == 16
    int(arithmetic(), 16)
