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
    assert "2.5 of the seeds' standard deviation" in said
    assert (arith or "does not name its arithmetic") in said


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


OTHER = "numpy 0, openblas 0 Elsewhere, 0123456789abcdef"


def test_how_far_is_measured_by_the_finite_seeds_and_never_hides_a_gap():
    # one seed's loss is not finite: the sd is the other seeds' (1.0 and 2.0: 0.707)
    runs = [{"seed": 0, "loss": [1.0]}, {"seed": 1, "loss": [None]}, {"seed": 2, "loss": [2.0]}]
    said = experiments.check_rerun({"runs": {"x": runs}, "arithmetic": OTHER}, "x",
                                   {"loss": [50.0]}, ["loss"])
    assert f"at most 49, {49 / np.std([1.0, 2.0], ddof=1):.2g} of" in said
    # two seeds not finite: no sd to measure by
    runs[2]["loss"] = [None]
    said = experiments.check_rerun({"runs": {"x": runs}, "arithmetic": OTHER}, "x",
                                   {"loss": [50.0]}, ["loss"])
    assert "49, inf of" in said
    # every seed agrees: any gap at all is infinitely many of their (zero) sds
    runs = [{"seed": s, "val": [0.9]} for s in range(3)]
    said = experiments.check_rerun({"runs": {"x": runs}, "arithmetic": OTHER}, "x",
                                   {"val": [0.5]}, ["val"])
    assert "inf" in said
    said = experiments.check_rerun({"runs": {"x": runs}, "arithmetic": OTHER}, "x",
                                   {"val": [0.9]}, ["val"])
    assert said.endswith("it is the record bit for bit all the same")


def test_an_empty_rerun_is_refused(record):
    with pytest.raises(AssertionError, match="no values"):
        experiments.check_rerun(record, LABEL, {"loss": []}, ["loss"])


def test_the_arithmetic_says_what_it_is_named_from():
    name = arithmetic()
    assert name == arithmetic() and name.startswith(f"numpy {np.__version__}, ")
    int(name.rsplit(", ", 1)[1], 16)


def _openblas_on_x86() -> bool:
    import platform

    from threadpoolctl import threadpool_info
    return platform.machine() in ("x86_64", "AMD64") and any(
        i.get("internal_api") == "openblas" for i in threadpool_info())


@pytest.mark.skipif(not _openblas_on_x86(), reason="OPENBLAS_CORETYPE picks OpenBLAS's x86 "
                                                   "kernels")
def test_other_kernels_are_another_arithmetic():
    import os
    import subprocess
    import sys

    code = "from mnist_cnn.numerics import arithmetic; print(arithmetic())"
    names = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, env={**os.environ, "OPENBLAS_CORETYPE": kind}
                            ).stdout.strip() for kind in ("Prescott", "Haswell")}
    assert len(names) == 2 and arithmetic() not in {n for n in names if "Prescott" in n}
