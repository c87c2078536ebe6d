"""Name the arithmetic of a committed experiment record that was made without one.

``python -m mnist_cnn experiment NAME`` writes the arithmetic it ran under
(:func:`mnist_cnn.numerics.arithmetic`) into the record. For a record made before
that, this reruns the first epoch of the runs the chapters rerun, under the
arithmetic this process has (``OPENBLAS_CORETYPE`` picks OpenBLAS's kernels), and
writes the name into the record only if every rerun value is the record's bit for
bit, with ``arithmetic_by`` saying how it was found.

    python tools/stamp_arithmetic.py optimisers
    OPENBLAS_CORETYPE=Haswell python tools/stamp_arithmetic.py architectures
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from mnist_cnn import experiments as E
from mnist_cnn._io import write_json
from mnist_cnn.numerics import arithmetic


def _overfitting():
    (x, y), (xv, yv) = E.overfitting_data()
    for label, recipe in E.RECIPES.items():
        yield label, lambda seed, r=recipe: E.overfitting_run(r, seed, x, y, xv, yv, epochs=1), \
            ["running", "train", "val"]


def _optimisers():
    (x, y), (xd, yd) = E.experiment_data(E.OPT_N_TRAIN, E.N_VAL + E.OPT_N_HOLDOUT)
    val, hold = (xd[:E.N_VAL], yd[:E.N_VAL]), (xd[E.N_VAL:], yd[E.N_VAL:])
    label = "momentum, step 0.3"
    yield label, lambda seed: E.optimisers_run(label, seed, x, y, *val, epochs=1,
                                               holdout=hold), ["val", "holdout", "loss"]


def _architectures():
    (x, y), (xv, yv) = E.experiment_data(E.ARCH_N_TRAIN, E.ARCH_N_VAL)
    for label in ("MLP", "course CNN", "LeNet-5 (1998)"):
        yield label, lambda seed, lab=label: E.architectures_run(lab, seed, x, y, xv, yv,
                                                                 epochs=1), ["val"]


def _normalisation():
    (x, y), (xv, yv), probe = E.normalisation_data()
    label = E.norm_label("batch norm", E.NORM_PROBE_LR)
    probed = [("probe", site, stat) for site in E.PROBE_SITES for stat in E.PROBE_STATS]
    yield label, lambda seed: E.normalisation_run(label, seed, x, y, xv, yv, epochs=1,
                                                  probe=probe), ["val", "loss", *probed]


def _search():
    (x, y), (xd, yd) = E.experiment_data(E.SEARCH_N_TRAIN, E.VALIDATION_SIZE)
    val, hold = (xd[:E.N_VAL], yd[:E.N_VAL]), (xd[E.N_VAL:], yd[E.N_VAL:])
    centre = E.search_points("grid", 0)[4]
    yield "grid", lambda seed: {"trials": {4: E.search_trial(centre, seed, x, y, *val, hold)}}, \
        [("trials", 4, key) for key in ("loss", "val", "holdout")]


RERUNS = {"overfitting": _overfitting, "optimisers": _optimisers,
          "architectures": _architectures, "normalisation": _normalisation, "search": _search}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(RERUNS))
    args = parser.parse_args(argv)
    record = E.load(args.name)
    name = arithmetic()
    print(f"{args.name}: rerunning under {name}", flush=True)
    # check_rerun's own rule, as if the record named this arithmetic: bit for bit
    as_here = {**record, "arithmetic": name}
    for label, run, keys in RERUNS[args.name]():
        try:
            said = E.check_rerun(as_here, label, run(record["runs"][label][0]["seed"]), keys)
        except AssertionError as exc:
            print(f"  {exc}\n{args.name}: not stamped (this arithmetic does not repeat "
                  f"the record)")
            return 1
        print(f"  {label}: {said}")
    path = E.experiment_path(args.name)
    raw = json.loads(path.read_text())
    raw["arithmetic"] = name
    raw["arithmetic_by"] = (f"tools/stamp_arithmetic.py, {time.strftime('%Y-%m-%d')}: the "
                            f"chapters' reruns repeat the record bit for bit under it")
    write_json(path, raw)
    print(f"{args.name}: stamped {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
