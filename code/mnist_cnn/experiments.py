"""Training experiments the book reports, over several seeds.

Too long to run in the book's build (minutes, not seconds), so a command runs
them once and writes the results with their card (settings, seeds, command,
library versions) to ``models/experiments/<name>.json``; the chapter loads the
file, checks it was made with the settings the page states, reruns the first
epoch of one seed to show the file is what this code produces, and computes
every figure it quotes from it.

    python -m mnist_cnn experiment overfitting        # about 6 minutes on 2 cores

``overfitting``: the course network on 1,000 training images, 12 epochs, with
four recipes (nothing; dropout; dropout + shifts; weight decay), each over five
seeds. After every epoch it records three accuracies:

- ``running``: the running mean over the epoch's batches, as ``fit`` reports it
  (dropout on, shifted images, weights changing during the epoch);
- ``train``: the network in inference mode on its 1,000 clean training images;
- ``val``: the same on 2,000 validation images.

The gap between training and validation is ``train - val``; the running mean is
kept to show why it is not the training accuracy.
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

import numpy as np

N_TRAIN = 1000          # few enough images for the network to memorise them
N_VAL = 2000            # validation digits (of the fixed 5,000)
EPOCHS = 12
BATCH_SIZE = 50
LR = 2e-3
SEEDS = (0, 1, 2, 3, 4)
# label -> the recipe's dropout rate, largest random shift (pixels), L2 weight decay
RECIPES = {
    "no dropout, no shifts": {"dropout": 0.0, "shift": 0, "weight_decay": 0.0},
    "dropout 0.3": {"dropout": 0.3, "shift": 0, "weight_decay": 0.0},
    "dropout 0.3 + shifts": {"dropout": 0.3, "shift": 2, "weight_decay": 0.0},
    "weight decay 1e-3": {"dropout": 0.0, "shift": 0, "weight_decay": 1e-3},
}
SETTINGS = {"n_train": N_TRAIN, "n_val": N_VAL, "epochs": EPOCHS, "batch_size": BATCH_SIZE,
            "lr": LR, "optimizer": "Adam", "engine": "fast (FastEngine, default shards)",
            "recipes": RECIPES}
ACCURACIES = ("running", "train", "val")


def experiment_path(name: str) -> Path:
    """Where experiment ``name`` is committed: ``models/experiments/<name>.json``."""
    from mnist_cnn import paths

    return paths.models_dir() / "experiments" / f"{name}.json"


def overfitting_data(cache_dir=None):
    """The experiment's images: the first 1,000 of the training split and the first
    2,000 of the fixed validation split, float32 in [0, 1]. Returns
    ``(x, y), (x_val, y_val)``."""
    from mnist_cnn.data import load_mnist, prepare_images, split_validation

    (x_u8, y), _ = load_mnist(cache_dir, progress=False)
    (x_fit, y_fit), (x_val, y_val) = split_validation(prepare_images(x_u8), y.astype(np.intp))
    return (x_fit[:N_TRAIN], y_fit[:N_TRAIN]), (x_val[:N_VAL], y_val[:N_VAL])


def overfitting_run(recipe: dict, seed: int, x, y, x_val, y_val, epochs: int = EPOCHS) -> dict:
    """Train the course network with ``recipe`` (a value of :data:`RECIPES`) from
    ``seed``. Returns per-epoch lists ``running``, ``train``, ``val`` (accuracies, see
    the module's docstring), ``seconds``, and the final ``weight_norm`` (the L2 norm
    of all parameters)."""
    from mnist_cnn.scratch.optim import Adam
    from mnist_cnn.scratch.train import build_model, evaluate, fit

    model = build_model(seed=seed, dropout=recipe["dropout"])
    history = fit(model, x, y, epochs=epochs, batch_size=BATCH_SIZE,
                  optimizer=Adam(LR, weight_decay=recipe["weight_decay"]), seed=seed,
                  validation_data=(x_val, y_val), shift=recipe["shift"], progress=False,
                  fast=True,
                  on_epoch_end=lambda epoch, net: {"train": evaluate(net, x, y)["accuracy"]})
    norm = float(np.sqrt(sum(float((p.astype(np.float64) ** 2).sum())
                             for p in model.parameters())))
    return {"running": history["accuracy"], "train": history["train"],
            "val": history["val_accuracy"], "seconds": history["seconds"], "weight_norm": norm}


def overfitting(seeds=SEEDS, progress: bool = True, cache_dir=None) -> dict:
    """Every recipe of :data:`RECIPES` from every seed. Returns the experiment's record
    (what ``experiment overfitting`` writes): settings, seeds and, per recipe, one
    run (:func:`overfitting_run`) per seed."""
    from tqdm import tqdm

    (x, y), (x_val, y_val) = overfitting_data(cache_dir)
    runs: dict[str, list] = {label: [] for label in RECIPES}
    jobs = [(label, seed) for label in RECIPES for seed in seeds]
    for label, seed in tqdm(jobs, desc="overfitting runs", unit="run", disable=not progress):
        runs[label].append({"seed": int(seed),
                            **overfitting_run(RECIPES[label], seed, x, y, x_val, y_val)})
    return {"experiment": "overfitting", "settings": SETTINGS, "seeds": [int(s) for s in seeds],
            "runs": runs}


def load(name: str = "overfitting", path=None) -> dict:
    """The committed record of experiment ``name``, checked: it must have been made
    with the settings this code states (else: rerun its command) and hold every
    recipe from at least three seeds."""
    import json

    path = Path(path) if path is not None else experiment_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"No results for experiment {name!r} at {path}: run "
                                f"`python -m mnist_cnn experiment {name}` (minutes).")
    try:
        record = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); rerun `python -m mnist_cnn "
                         f"experiment {name}`.") from exc
    if not isinstance(record, dict) or record.get("experiment") != name:
        raise ValueError(f"{path} is not the record of experiment {name!r}.")
    if record.get("settings") != json.loads(json.dumps(SETTINGS)):
        raise ValueError(f"{path} was made with other settings than this code's; rerun "
                         f"`python -m mnist_cnn experiment {name}`.")
    runs = record.get("runs", {})
    for label in RECIPES:
        seeds = [run.get("seed") for run in runs.get(label, [])]
        if len(set(seeds)) < 3:
            raise ValueError(f"{path}: recipe {label!r} has {len(set(seeds))} seed(s); "
                             "an experiment needs at least 3.")
        for run in runs[label]:
            if any(len(run.get(key, [])) != EPOCHS for key in ACCURACIES):
                raise ValueError(f"{path}: a run of {label!r} does not have {EPOCHS} epochs.")
    return record


def final(record: dict, label: str, key: str) -> np.ndarray:
    """One value per seed: the last epoch's ``key`` ("running", "train", "val",
    "gap" = train - val, or "weight_norm") of recipe ``label``."""
    runs = record["runs"][label]
    if key == "gap":
        return np.array([r["train"][-1] - r["val"][-1] for r in runs])
    if key == "weight_norm":
        return np.array([r["weight_norm"] for r in runs])
    return np.array([r[key][-1] for r in runs])


def mean_sd(values) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1) of per-seed values."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1))


# A difference between two recipes counts as a finding only beyond this many
# standard errors (about a 95 % screen for normal noise; with 5 seeds a rough one).
NOISE_SE = 2.0


def compare(a, b) -> tuple[float, float, str]:
    """Per-seed values ``a`` against ``b``: (mean(a) - mean(b), the standard error of
    that difference, sqrt(sd_a^2/n_a + sd_b^2/n_b), and the verdict "higher", "lower"
    or "within seed noise" (a difference under NOISE_SE standard errors))."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = float(a.mean() - b.mean())
    se = float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
    verdict = ("within seed noise" if abs(diff) <= NOISE_SE * se
               else "higher" if diff > 0 else "lower")
    return diff, se, verdict


def _command_line(args: argparse.Namespace) -> str:
    parts = ["python", "-m", "mnist_cnn", "experiment", args.name]
    if tuple(args.seeds) != SEEDS:
        parts += ["--seeds", *map(str, args.seeds)]
    if args.out:
        parts += ["--out", str(args.out)]
    return shlex.join(parts)


def cli_experiment(args: argparse.Namespace) -> int:
    """``python -m mnist_cnn experiment NAME``: run it, write its record atomically."""
    from mnist_cnn._io import library_versions, write_json

    if len(set(args.seeds)) < 3:
        raise ValueError(f"--seeds needs at least 3 different seeds, got {args.seeds}")
    out = Path(args.out) if args.out else experiment_path(args.name)
    start = time.perf_counter()
    record = overfitting(tuple(args.seeds), progress=True, cache_dir=args.cache_dir)
    record["command"] = _command_line(args)
    record["created"] = time.strftime("%Y-%m-%d")
    record["versions"] = library_versions()
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, record)
    print(f"Experiment {args.name}: {len(RECIPES)} recipes x {len(args.seeds)} seeds in "
          f"{time.perf_counter() - start:.0f} s -> {out}")
    for label in RECIPES:
        gap, val = mean_sd(final(record, label, "gap")), mean_sd(final(record, label, "val"))
        print(f"  {label:22s} gap {gap[0]:+.1%} ± {gap[1]:.1%}   "
              f"validation {val[0]:.1%} ± {val[1]:.1%}")
    return 0
