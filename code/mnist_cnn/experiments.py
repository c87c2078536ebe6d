"""Training experiments the book reports, over several seeds.

Too long to run in the book's build (minutes, not seconds), so a command runs
them once and writes the results with their card (settings, seeds, command,
library versions, wall time) to ``models/experiments/<name>.json``; the chapter
loads the file, which checks it was made with the settings this code states, and
computes every figure it quotes from it. The chapters also rerun the first epoch
of some runs (:func:`check_rerun`): bit for bit the record where the arithmetic
is the record's (the record names it, :func:`mnist_cnn.numerics.arithmetic`);
elsewhere training carries last-bit differences on and no bound holds, so the
check says how far the rerun landed. The Keras experiment is not rerun in the
build: an epoch of it costs more than a page should.

    python -m mnist_cnn experiment overfitting
    python -m mnist_cnn experiment batchnorm          # Keras
    python -m mnist_cnn experiment optimisers
    python -m mnist_cnn experiment architectures
    python -m mnist_cnn experiment normalisation
    python -m mnist_cnn experiment search

(each takes minutes; the record keeps its own wall time).

``overfitting``: the course network on 1,000 training images, 12 epochs, with
four recipes (nothing; dropout; dropout + shifts; weight decay), each over five
seeds. After every epoch it records three accuracies:

- ``running``: the running mean over the epoch's batches, as ``fit`` reports it
  (dropout on, shifted images, weights changing during the epoch);
- ``train``: the network in inference mode on its 1,000 clean training images;
- ``val``: the same on 2,000 validation images.

The gap between training and validation is ``train - val``; the running mean is
kept to show why it is not the training accuracy.

``batchnorm``: the production Keras architecture with and without batch
normalisation, trained like the Keras chapter's live run (3 epochs on the first
6,000 training images, the last 600 of them held out), five seeds. It records the
validation accuracy after each epoch (Keras' inference mode: BN uses its running
averages) and, for the BN network, the same with each BN layer's statistics
recomputed from 2,000 of its training images (:func:`reestimated`), which shows
how much of BN's early validation accuracy the running averages' lag costs.

``optimisers``: the course network on 3,000 training images, 4 epochs, batch 50,
three seeds, trained by plain SGD and by SGD with momentum 0.9 at the same
*effective* step sizes (momentum's ``lr`` is the step times ``1 - momentum``, so
that under a constant gradient both move a weight equally fast), and by Adam over
a grid of learning rates. After every epoch it records the training loss ``fit``
reports (``null`` where it was not a finite number), the validation accuracy
on the 2,000 digits of ``overfitting`` (``val``, the digits the chapter chooses
each optimiser's step on) and on the other 3,000 of the fixed 5,000 (``holdout``,
never used to choose anything, so the chosen settings can be scored on digits
that did not pick them). A step that is too large makes a run diverge; that is a
result, recorded like any other (:func:`diverged`).

``architectures``: every network of :mod:`mnist_cnn.architectures` (an MLP, the
course network, LeNet-5 in its 1998 and modern forms, VGG blocks, the course
network with a global-average-pooling head, a small ResNet) trained with one recipe
(Adam 2e-3, batch 50, no augmentation, so that what a network does with a moved
digit comes from its design) on the first 8,000 training images for 8 epochs,
three seeds. It records the validation accuracy on all 5,000 validation digits
after every epoch, the training time, and after training the accuracy on those
digits moved by 0-4 pixels (:func:`shifted_accuracy`).

``normalisation``: the course network (dropout off) in four variants, with nothing,
batch normalisation or layer normalisation after each convolution, before its ReLU,
or batch normalisation after the hidden dense layer as well (:func:`normalised_model`;
from one seed all four start from the same weights), trained by plain SGD (no
momentum) on 3,000 training images, 3 epochs, batch 50, at learning rates about half
a decade apart from 0.03 to 10, three seeds. After every epoch it records the
training loss (``null`` where not finite) and the validation accuracy on the 2,000
digits of ``overfitting``, and after training the norm of the second convolution's
kernel. At one learning rate where every variant trains
(:data:`NORM_PROBE_LR`) the runs also carry a probe: ten times during training
(:data:`PROBE_AT`, most of them early) and after it, the mean, standard deviation
and 15th, 50th and 85th percentiles of the second convolution's output and of the
input of the ReLU after it, on 500 fixed validation digits (:func:`probe_inputs`),
the distribution whose shifts batch normalisation was introduced to remove (Ioffe
and Szegedy, 2015).

``search``: grid search against random search (Bergstra and Bengio, 2012) for
AdamW's learning rate and weight decay, each over a range on a log scale
(:data:`SEARCH_BOX`), on a budget of 9 training runs per search
(:func:`search_points`: a 3 x 3 grid, or 9 points drawn at random from the seed);
the course network on 3,000 training images, 2 epochs, batch 50, three seeds
(the seed draws the random points and starts every run of its searches). Each run
records its training loss and its accuracy on the 2,000 validation digits (what
a search chooses by) and on the other 3,000 (chosen by nothing) after every epoch
(:func:`search_best` gives what each search chose).
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

import numpy as np

from mnist_cnn.data import VALIDATION_SIZE
from mnist_cnn.numerics import arithmetic
from mnist_cnn.scratch.fast.engine import SHARDS, FastEngine
from mnist_cnn.scratch.train import DROPOUT

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
# Everything the numbers depend on: a record made with other settings does not load.
# (The speed layer's numbers depend on its number of shards, each shard drawing its
# own dropout masks; the validation digits come from the fixed split.)
SETTINGS = {"n_train": N_TRAIN, "n_val": N_VAL, "validation_split": VALIDATION_SIZE,
            "epochs": EPOCHS, "batch_size": BATCH_SIZE, "lr": LR, "optimizer": "Adam",
            "engine": "FastEngine", "shards": SHARDS, "recipes": RECIPES}
# Figures are taken as each seed's mean over the last epochs: one epoch's validation
# accuracy moves by about as much as the spread between seeds.
ENDPOINT_EPOCHS = 3
ACCURACIES = ("running", "train", "val")


def experiment_path(name: str) -> Path:
    """Where experiment ``name`` is committed: ``models/experiments/<name>.json``."""
    from mnist_cnn import paths

    return paths.models_dir() / "experiments" / f"{name}.json"


def experiment_data(n_train: int, n_val: int = N_VAL, cache_dir=None):
    """An experiment's images: the first ``n_train`` of the training split and the
    first ``n_val`` of the fixed validation split, float32 in [0, 1]. Returns
    ``(x, y), (x_val, y_val)``."""
    from mnist_cnn.data import load_mnist, prepare_images, split_validation

    (x_u8, y), _ = load_mnist(cache_dir, progress=False)
    (x_fit, y_fit), (x_val, y_val) = split_validation(prepare_images(x_u8), y.astype(np.intp),
                                                      VALIDATION_SIZE)
    return (x_fit[:n_train], y_fit[:n_train]), (x_val[:n_val], y_val[:n_val])


def overfitting_data(cache_dir=None):
    """The overfitting experiment's images: the first 1,000 of the training split and
    the first 2,000 of the fixed validation split (:func:`experiment_data`)."""
    return experiment_data(N_TRAIN, cache_dir=cache_dir)


def overfitting_run(recipe: dict, seed: int, x, y, x_val, y_val,
                    epochs: int = EPOCHS) -> dict:
    """Train the course network with ``recipe`` (a value of :data:`RECIPES`) from
    ``seed``. Returns per-epoch lists ``running``, ``train``, ``val`` (accuracies, see
    the module's docstring), ``seconds``, and the final ``weight_norm`` (the L2 norm
    of all parameters)."""
    from mnist_cnn.scratch.optim import Adam
    from mnist_cnn.scratch.train import build_model, fit, loss_and_accuracy

    model = build_model(seed=seed, dropout=recipe["dropout"])
    history = fit(model, x, y, epochs=epochs, batch_size=BATCH_SIZE,
                  optimizer=Adam(LR, weight_decay=recipe["weight_decay"]), seed=seed,
                  validation_data=(x_val, y_val), shift=recipe["shift"],
                  progress=False, engine=FastEngine(model),
                  on_epoch_end=lambda epoch, net: {
                      "train": loss_and_accuracy(net, x, y)["accuracy"]})
    norm = float(np.sqrt(sum(float((p.astype(np.float64) ** 2).sum())
                             for p in model.parameters())))
    return {"running": history["accuracy"], "train": history["train"],
            "val": history["val_accuracy"], "seconds": history["seconds"],
            "weight_norm": norm}


def _every_seed(name: str, settings: dict, labels, seeds, run, progress: bool,
                unit: str = "run") -> dict:
    """Call ``run(label, seed)`` for every label from every seed, label by label, with
    a progress bar over the runs; returns the experiment's record: its name,
    settings, seeds and, per label, one run per seed (each with its seed)."""
    from tqdm import tqdm

    runs: dict[str, list] = {label: [] for label in labels}
    jobs = [(label, seed) for label in labels for seed in seeds]
    for label, seed in tqdm(jobs, desc=f"{name} {unit}s", unit=unit, disable=not progress):
        runs[label].append({"seed": int(seed), **run(label, seed)})
    return {"experiment": name, "settings": settings, "seeds": [int(s) for s in seeds],
            "runs": runs}


def overfitting(seeds=SEEDS, progress: bool = True, cache_dir=None) -> dict:
    """Every recipe of :data:`RECIPES` from every seed. Returns the experiment's record
    (what ``experiment overfitting`` writes): settings, seeds and, per recipe, one
    run (:func:`overfitting_run`) per seed."""
    (x, y), (x_val, y_val) = overfitting_data(cache_dir)
    return _every_seed("overfitting", SETTINGS, RECIPES, seeds, lambda label, seed:
                       overfitting_run(RECIPES[label], seed, x, y, x_val, y_val), progress)


def load(name: str = "overfitting", path=None) -> dict:
    """The committed record of experiment ``name`` (a key of :data:`EXPERIMENTS`),
    checked: it must have been made with the settings this code states (else: rerun
    its command) and hold every label from at least three seeds, with every epoch."""
    import json

    spec = EXPERIMENTS[name]
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
    if record.get("settings") != json.loads(json.dumps(spec["settings"])):
        raise ValueError(f"{path} was made with other settings than this code's; rerun "
                         f"`python -m mnist_cnn experiment {name}`.")
    try:
        _check_runs(record, spec)
    except (AttributeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a well-formed record of {name!r} ({exc!r}); rerun "
                         f"`python -m mnist_cnn experiment {name}`.") from exc
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return record


def _check_runs(record: dict, spec: dict) -> None:
    seeds = record["seeds"]
    if len(set(seeds)) != len(seeds) or len(seeds) < 3:
        raise ValueError(f"seeds {seeds}: an experiment needs at least 3 different seeds")
    for label in spec["labels"]:
        runs = record["runs"][label]
        if [run["seed"] for run in runs] != seeds:
            raise ValueError(f"{label!r} was not run once from each of the seeds {seeds}")
        for run in runs:
            for key in spec["per_epoch"] + spec.get("label_per_epoch", {}).get(label, ()):
                values = run[key]
                if len(values) != spec["epochs"] or not all(
                        isinstance(v, float) and 0 <= v <= 1 for v in values):
                    raise ValueError(f"{label!r}, seed {run['seed']}: {key!r} is not "
                                     f"{spec['epochs']} accuracies")
            for key in spec.get("losses", ()):
                values = run[key]           # None: the loss was not a finite number
                if len(values) != spec["epochs"] or not all(
                        v is None or (isinstance(v, float) and v >= 0) for v in values):
                    raise ValueError(f"{label!r}, seed {run['seed']}: {key!r} is not "
                                     f"{spec['epochs']} losses")
            for key, length in spec.get("curves", {}).items():
                values = run[key]
                if len(values) != length or not all(
                        isinstance(v, float) and 0 <= v <= 1 for v in values):
                    raise ValueError(f"{label!r}, seed {run['seed']}: {key!r} is not "
                                     f"{length} accuracies")
            for key in spec.get("per_run", ()):
                if not isinstance(run[key], float):
                    raise ValueError(f"{label!r}, seed {run['seed']}: no {key!r}")
    if "check" in spec:
        spec["check"](record)
    if not isinstance(record["wall_seconds"], (int, float)):
        raise ValueError("no wall time")


def final(record: dict, label: str, key: str, last: int = ENDPOINT_EPOCHS) -> np.ndarray:
    """One value per seed for recipe (or model) ``label``: the mean over the ``last``
    epochs of ``key`` ("running", "train", "val", "val_reestimated", "loss", or "gap"
    = train - val), or the run's "weight_norm" (measured once, after training). A
    loss recorded as None (not finite) counts as NaN."""
    runs = record["runs"][label]
    if key == "weight_norm":
        return np.array([r["weight_norm"] for r in runs])
    if key == "gap":
        return final(record, label, "train", last) - final(record, label, "val", last)
    return np.array([np.mean(np.array(r[key][-last:], dtype=np.float64)) for r in runs])


def mean_sd(values) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1) of per-seed values."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1))


def pm(values, digits: int = 1) -> str:
    """Per-seed fractions as "mean ± sd" in percent (points), e.g. "97.3 ± 0.2"."""
    mean, sd = mean_sd(np.asarray(values, dtype=np.float64) * 100)
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def _values(run: dict, key) -> np.ndarray:
    # key: "val", or a path into the run such as ("probe", "conv", "mean"); a loss
    # recorded as None (not finite) becomes NaN
    for part in key if isinstance(key, tuple) else (key,):
        run = run[part]
    return np.array([np.nan if v is None else v for v in np.atleast_1d(run)], dtype=np.float64)


def check_rerun(record: dict, label: str, rerun: dict, keys) -> str:
    """Check that ``rerun`` (the first epoch(s) of ``label``'s run from the record's
    first seed, computed again) is what the record holds, for each of ``keys``.

    A record names the arithmetic under which its runs repeat bit for bit
    (:func:`mnist_cnn.numerics.arithmetic`). Under that arithmetic the rerun must be
    the record bit for bit, and anything else means the code computes something
    else: an AssertionError. Under other arithmetic the sums round differently in
    their last bits and training carries the difference on, step after step: a
    digit near a decision boundary changes sides, and after a few dozen steps a run
    can be as far from the record as a run from another seed. No bound from rounding
    holds there after a whole epoch, so the rerun is only required to be finite
    where the record is, and the returned text says how far it landed, in standard
    deviations of the record's seeds.
    """
    runs = record["runs"][label]
    mine = {key: _values(rerun, key) for key in keys}
    theirs = {key: _values(runs[0], key)[:len(mine[key])] for key in keys}
    for key in keys:
        assert len(mine[key]), f"{label}, {key}: the rerun has no values"
        assert np.array_equal(np.isfinite(mine[key]), np.isfinite(theirs[key])), (
            f"{label}, {key}: the rerun gives {mine[key]}, the record {theirs[key]}")
    if record.get("arithmetic") == arithmetic():
        for key in keys:
            assert np.array_equal(mine[key], theirs[key], equal_nan=True), (
                f"{label}, {key}: the rerun gives {mine[key]}, the record {theirs[key]}, "
                f"under the record's arithmetic: not this code's result")
        return "identical to the record, bit for bit, as the record's arithmetic must give"
    far, largest = 0.0, 0.0
    for key in keys:
        finite = np.isfinite(theirs[key])
        seeds = np.array([_values(run, key)[:len(mine[key])] for run in runs])
        with np.errstate(all="ignore"):       # a column where fewer than 2 seeds are finite
            sd = np.nanstd(seeds, axis=0, ddof=1)[finite]
        gap = np.abs(mine[key] - theirs[key])[finite]
        ratio = np.full(gap.shape, np.inf)    # a gap where the seeds agree, or NaN sd
        np.divide(gap, sd, out=ratio, where=sd > 0)
        ratio[gap == 0] = 0.0
        far = max([far, *ratio.tolist()])
        largest = max([largest, *gap.tolist()])
    why = ("the record does not name its arithmetic" if "arithmetic" not in record
           else f"this machine's arithmetic is {arithmetic()}; the record's is "
           f"{record['arithmetic']}")
    if largest == 0:
        return f"not compared bit for bit ({why}); it is the record bit for bit all the same"
    return (f"not compared bit for bit ({why}); it differs from the record by at most "
            f"{largest:.2g}, {far:.2g} of the seeds' standard deviation")


BN_IMAGES = 6000        # the Keras chapter's live run: the first 6,000 training images
BN_EPOCHS = 3
BN_BATCH_SIZE = 32
BN_LR = 1e-3
BN_REESTIMATE_IMAGES = 2000
BN_MODELS = {"with BN": True, "without BN": False}       # label -> build_model(batch_norm=)
BN_SETTINGS = {"n_images": BN_IMAGES, "validation_split": VALIDATION_SIZE, "epochs": BN_EPOCHS,
               "batch_size": BN_BATCH_SIZE, "lr": BN_LR, "reestimate_images": BN_REESTIMATE_IMAGES,
               "trainer": "keras_model.train (augmentation, label smoothing, cosine schedule)",
               "models": BN_MODELS}


def reestimated(model, x):
    """A copy of the Keras ``model`` whose BatchNormalization layers hold the mean and
    variance of their inputs over the images ``x`` (each computed in inference mode,
    layer by layer), instead of the running averages training left there."""
    from mnist_cnn.backend import import_keras

    keras = import_keras()
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    entry = copy.inputs[0] if len(copy.inputs) == 1 else copy.inputs
    for layer in copy.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            inputs = np.asarray(keras.Model(entry, layer.input)(x, training=False),
                                dtype=np.float64)          # statistics summed in float64
            axes = tuple(range(inputs.ndim - 1))             # all but the channels
            layer.moving_mean.assign(inputs.mean(axis=axes))
            layer.moving_variance.assign(inputs.var(axis=axes))
    return copy


def keras_accuracy(model, x, y) -> float:
    """Accuracy of a Keras classifier in inference mode."""
    return float(np.mean(np.asarray(model(x, training=False)).argmax(axis=1) == y))


def batchnorm_run(batch_norm: bool, seed: int, x, y) -> dict:
    """Train the production architecture with (or without) BN on ``x, y`` (float32
    images, int labels; the last tenth is held out for validation) as the Keras
    chapter's live run does. Returns per-epoch ``val`` accuracy and, with BN,
    ``val_reestimated`` (BN statistics recomputed, :func:`reestimated`)."""
    from mnist_cnn import keras_model as km
    from mnist_cnn.backend import import_keras
    from mnist_cnn.data import split_validation

    keras = import_keras()
    (x_fit, _), (x_val, y_val) = split_validation(x, y, VALIDATION_SIZE)
    reestimates: list[float] = []

    class Reestimate(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            copy = reestimated(self.model, x_fit[:BN_REESTIMATE_IMAGES])
            reestimates.append(keras_accuracy(copy, x_val, y_val))

    keras.utils.set_random_seed(seed)            # the initial weights come from the seed too
    model = km.build_model(batch_norm=batch_norm)
    history = km.train(model, x, y, epochs=BN_EPOCHS, batch_size=BN_BATCH_SIZE, lr=BN_LR,
                       seed=seed, verbose=0, callbacks=[Reestimate()] if batch_norm else [])
    run = {"val": [float(v) for v in history.history["val_accuracy"]]}
    if batch_norm:
        run["val_reestimated"] = reestimates
    return run


def batchnorm(seeds=SEEDS, progress: bool = True, cache_dir=None) -> dict:
    """Both networks of :data:`BN_MODELS` from every seed; the experiment's record."""
    from mnist_cnn.data import load_mnist, prepare_images

    (x_u8, y), _ = load_mnist(cache_dir, progress=False)
    x, y = prepare_images(x_u8[:BN_IMAGES]), y[:BN_IMAGES].astype(np.intp)
    return _every_seed("batchnorm", BN_SETTINGS, BN_MODELS, seeds, lambda label, seed:
                       batchnorm_run(BN_MODELS[label], seed, x, y), progress)


OPT_N_TRAIN = 3000      # enough images for the optimisers to differ in 4 epochs
OPT_EPOCHS = 4
OPT_BATCH_SIZE = 50
OPT_SEEDS = (0, 1, 2)
# the validation digits N_VAL onwards: scored after every epoch, never used to choose
OPT_N_HOLDOUT = VALIDATION_SIZE - N_VAL
MOMENTUM = 0.9
# Effective step sizes eta_eff: plain SGD steps with lr = eta_eff, momentum with
# lr = eta_eff * (1 - MOMENTUM), whose velocity under a constant gradient g tends to
# -eta_eff * g. The largest steps are there to find where training stops working.
EFFECTIVE_STEPS = (0.03, 0.1, 0.3, 1.0, 3.0)
ADAM_LRS = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
# A run whose last validation accuracy is below this has diverged: its weights left
# the region where the network learns and it ends near chance (10 %). Runs that
# learn end far above it, so the split does not depend on the exact line.
DIVERGED_BELOW = 0.5


def _optimiser_table() -> dict:
    """label -> optimiser: plain SGD and momentum at each effective step, Adam at
    each of its learning rates."""
    table = {}
    for eta in EFFECTIVE_STEPS:
        table[f"SGD, step {eta:g}"] = {"optimizer": "SGD", "lr": eta, "momentum": 0.0,
                                       "effective_step": eta}
        # under a steady gradient g momentum's velocity tends to -lr * g / (1 - mu):
        # lr = eta * (1 - mu) makes that -eta * g, plain SGD's step
        table[f"momentum, step {eta:g}"] = {
            "optimizer": "SGD", "lr": round(eta * (1 - MOMENTUM), 12),
            "momentum": MOMENTUM, "effective_step": eta}
    for lr in ADAM_LRS:
        table[f"Adam, lr {lr:g}"] = {"optimizer": "Adam", "lr": lr}
    return table


# label -> the optimiser of the run (its class, lr, momentum, effective step)
OPTIMISERS = _optimiser_table()
OPT_SETTINGS = {"n_train": OPT_N_TRAIN, "n_val": N_VAL, "n_holdout": OPT_N_HOLDOUT,
                "validation_split": VALIDATION_SIZE, "epochs": OPT_EPOCHS,
                "batch_size": OPT_BATCH_SIZE, "dropout": DROPOUT,
                "engine": "FastEngine", "shards": SHARDS, "optimizers": OPTIMISERS}


def make_optimiser(spec: dict):
    """The optimiser a value of :data:`OPTIMISERS` describes, with fresh state."""
    from mnist_cnn.scratch.optim import SGD, Adam

    if spec["optimizer"] == "Adam":
        return Adam(spec["lr"])
    return SGD(spec["lr"], momentum=spec["momentum"])


def optimisers_run(label: str, seed: int, x, y, x_val, y_val,
                   epochs: int = OPT_EPOCHS, holdout=None) -> dict:
    """Train the course network from ``seed`` with the optimiser of ``label`` (a key
    of :data:`OPTIMISERS`). Returns per-epoch lists ``loss`` (the training loss
    ``fit`` reports; None where it was not finite) and ``val`` (validation
    accuracy), and the run's training ``seconds``; with ``holdout=(x_hold,
    y_hold)`` also a per-epoch ``holdout`` accuracy on those digits (scoring them
    draws no random numbers, so ``loss`` and ``val`` are the same either way)."""
    from mnist_cnn.scratch.train import build_model, fit, loss_and_accuracy

    model = build_model(seed=seed)
    history = fit(model, x, y, epochs=epochs, batch_size=OPT_BATCH_SIZE,
                  optimizer=make_optimiser(OPTIMISERS[label]), seed=seed,
                  validation_data=(x_val, y_val), progress=False, engine=FastEngine(model),
                  on_epoch_end=None if holdout is None else lambda epoch, net: {
                      "holdout": loss_and_accuracy(net, *holdout)["accuracy"]})
    run = {"loss": [float(v) if np.isfinite(v) else None for v in history["loss"]],
           "val": [float(v) for v in history["val_accuracy"]],
           "seconds": float(sum(history["seconds"]))}
    if holdout is not None:
        run["holdout"] = [float(v) for v in history["holdout"]]
    return run


def optimisers(seeds=OPT_SEEDS, progress: bool = True, cache_dir=None) -> dict:
    """Every optimiser of :data:`OPTIMISERS` from every seed; the experiment's record."""
    (x, y), (x_all, y_all) = experiment_data(OPT_N_TRAIN, N_VAL + OPT_N_HOLDOUT,
                                             cache_dir=cache_dir)
    (x_val, y_val), holdout = (x_all[:N_VAL], y_all[:N_VAL]), (x_all[N_VAL:], y_all[N_VAL:])
    return _every_seed("optimisers", OPT_SETTINGS, OPTIMISERS, seeds, lambda label, seed:
                       optimisers_run(label, seed, x, y, x_val, y_val, holdout=holdout),
                       progress)


ARCH_N_TRAIN = 8000     # enough for the architectures to separate in a few epochs
ARCH_N_VAL = VALIDATION_SIZE
ARCH_EPOCHS = 8
ARCH_BATCH_SIZE = 50
ARCH_LR = 2e-3          # Adam, the course recipe's first step size, for every network
ARCH_SEEDS = (0, 1, 2)
SHIFTS = (0, 1, 2, 3, 4)        # pixels; each validation digit moved up, down, left, right


def _arch_labels() -> tuple:
    from mnist_cnn.architectures import ARCHITECTURES

    return tuple(ARCHITECTURES)


ARCH_SETTINGS = {"n_train": ARCH_N_TRAIN, "n_val": ARCH_N_VAL,
                 "validation_split": VALIDATION_SIZE, "epochs": ARCH_EPOCHS,
                 "batch_size": ARCH_BATCH_SIZE, "lr": ARCH_LR, "optimizer": "Adam",
                 "augmentation": "none", "shifts": SHIFTS, "engine": "FastEngine",
                 "shards": SHARDS, "architectures": _arch_labels()}


def shifted_accuracy(net, x, y, shifts=SHIFTS) -> list[float]:
    """Accuracy of ``net`` on ``x`` moved by each number of pixels in ``shifts``, the
    mean over the four directions (up, down, left, right); 0 pixels is ``x`` itself."""
    from mnist_cnn.data import shift_images
    from mnist_cnn.scratch.train import loss_and_accuracy

    def accuracy(images):
        return loss_and_accuracy(net, images, y)["accuracy"]

    return [accuracy(x) if k == 0 else float(np.mean([
        accuracy(shift_images(x, dy, dx)) for dy, dx in ((-k, 0), (k, 0), (0, -k), (0, k))]))
        for k in shifts]


def architectures_run(label: str, seed: int, x, y, x_val, y_val,
                      epochs: int = ARCH_EPOCHS) -> dict:
    """Train the network ``label`` (a key of
    :data:`mnist_cnn.architectures.ARCHITECTURES`) from ``seed`` with the shared
    recipe (Adam, no augmentation). Returns per-epoch ``val`` accuracy, the
    training ``seconds`` and, after training, ``shifted`` (:func:`shifted_accuracy`
    on the validation digits)."""
    from mnist_cnn.architectures import build
    from mnist_cnn.scratch.optim import Adam
    from mnist_cnn.scratch.train import fit

    net = build(label, seed)
    history = fit(net, x, y, epochs=epochs, batch_size=ARCH_BATCH_SIZE,
                  optimizer=Adam(ARCH_LR), seed=seed, validation_data=(x_val, y_val),
                  progress=False, engine=FastEngine(net))
    return {"val": [float(v) for v in history["val_accuracy"]],
            "seconds": float(sum(history["seconds"])),
            "shifted": [float(v) for v in shifted_accuracy(net, x_val, y_val)]}


def architectures(seeds=ARCH_SEEDS, progress: bool = True, cache_dir=None) -> dict:
    """Every network of :data:`mnist_cnn.architectures.ARCHITECTURES` from every
    seed; the experiment's record."""
    (x, y), (x_val, y_val) = experiment_data(ARCH_N_TRAIN, ARCH_N_VAL, cache_dir=cache_dir)
    return _every_seed("architectures", ARCH_SETTINGS, _arch_labels(), seeds,
                       lambda label, seed: architectures_run(label, seed, x, y, x_val, y_val),
                       progress)


def diverged(record: dict, label: str) -> np.ndarray:
    """One bool per seed: did the run of ``label`` diverge (a training loss that was
    not finite, or a last validation accuracy below :data:`DIVERGED_BELOW`)?"""
    return np.array([any(v is None for v in r["loss"]) or r["val"][-1] < DIVERGED_BELOW
                     for r in record["runs"][label]])


def _diverged_summary(record: dict, label: str) -> str:
    return f"diverged {int(diverged(record, label).sum())}/{len(record['seeds'])}"


NORM_N_TRAIN = 3000
NORM_EPOCHS = 3
NORM_BATCH_SIZE = 50
NORM_SEEDS = (0, 1, 2)
# Plain SGD's learning rates, about half a decade apart, up to where the network
# without normalisation diverges (the optimiser lab: at 1 already) and beyond.
NORM_LRS = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
# variant -> the normalising layer and the layers of build_model it follows, each
# before its ReLU: both convolutions, or those and the hidden dense layer (as in the
# production Keras model), whose output feeds the logits
NORMALISERS = {
    "none": {"layer": None, "after": ()},
    "batch norm": {"layer": "BatchNormalization", "after": ("conv2d", "conv2d_1")},
    "layer norm": {"layer": "LayerNormalization", "after": ("conv2d", "conv2d_1")},
    "batch norm + dense": {"layer": "BatchNormalization",
                           "after": ("conv2d", "conv2d_1", "dense")},
}
# Keras' 0.99 remembers about 100 steps, longer than an epoch here (60 steps), and
# the running averages are what the validation accuracy is measured with.
NORM_BN_MOMENTUM = 0.9
# The probe: at this learning rate, where every variant trains, before the steps
# PROBE_AT (most change comes early) and after the last, the distribution of the
# second convolution's output and of the input of the ReLU after it, on
# PROBE_IMAGES fixed validation digits; its figures kept to PROBE_DIGITS
# significant digits (they are plotted, and the record stays small).
NORM_PROBE_LR = 0.1
PROBE_AT = (0, 2, 5, 10, 20, 40, 60, 90, 120, 150)
PROBE_DIGITS = 6
PROBE_IMAGES = 500
PROBE_LAYER = "conv2d_1"
PROBE_PERCENTILES = (15, 50, 85)     # the percentiles Ioffe and Szegedy (2015) plot
PROBE_STATS = ("mean", "sd", *(f"p{q}" for q in PROBE_PERCENTILES))
PROBE_SITES = ("conv", "relu")


def _norm_labels() -> dict:
    """label -> (variant, learning rate), e.g. "batch norm, lr 0.3"."""
    return {f"{variant}, lr {lr:g}": (variant, lr) for variant in NORMALISERS
            for lr in NORM_LRS}


NORM_RUNS = _norm_labels()
NORM_SETTINGS = {"n_train": NORM_N_TRAIN, "n_val": N_VAL,
                 "validation_split": VALIDATION_SIZE, "epochs": NORM_EPOCHS,
                 "batch_size": NORM_BATCH_SIZE, "optimizer": "SGD", "momentum": 0.0,
                 "lrs": NORM_LRS, "dropout": 0.0, "normalisers": NORMALISERS,
                 "placement": "after the layers named, before their ReLU",
                 "initial_weights": "build_model(seed, dropout=0)'s, in every variant",
                 "bn_momentum": NORM_BN_MOMENTUM,
                 "probe": {"lr": NORM_PROBE_LR, "at": PROBE_AT, "digits": PROBE_DIGITS,
                           "images": PROBE_IMAGES, "layer": PROBE_LAYER,
                           "sites": PROBE_SITES, "stats": PROBE_STATS},
                 "engine": "FastEngine", "shards": 1}


def norm_label(variant: str, lr: float) -> str:
    """The label of the run of ``variant`` (a key of :data:`NORMALISERS`) at ``lr``."""
    return f"{variant}, lr {lr:g}"


def normalised_model(variant: str, seed: int):
    """The course network without dropout, with the normalising layer of
    :data:`NORMALISERS` [``variant``] after each of the layers it names (before their
    ReLU), called ``norm_<layer>``. Every convolution and dense layer starts from
    the weights ``build_model(seed, dropout=0)`` draws, so from one seed the
    variants differ only by their normalisers (gamma 1, beta 0)."""
    from mnist_cnn.scratch import layers as L
    from mnist_cnn.scratch.network import Sequential
    from mnist_cnn.scratch.train import build_model

    plain = build_model(seed=seed, dropout=0.0)
    spec = NORMALISERS[variant]
    if spec["layer"] is None:
        return plain
    start = {layer.name: layer.get_weights() for layer in plain.layers}
    stack = []
    for layer in plain.layers:
        stack.append(layer)
        if layer.name in spec["after"]:
            norm = getattr(L, spec["layer"])
            kwargs = {"momentum": NORM_BN_MOMENTUM} if norm is L.BatchNormalization else {}
            stack.append(norm(name=f"norm_{layer.name}", **kwargs))
    net = Sequential(stack, input_shape=plain.input_shape, seed=seed)  # rebuilt, then:
    for layer in net.layers:
        if layer.name in start:
            layer.set_weights(start[layer.name])
    return net


def probe_inputs(net, x) -> dict:
    """What the layers after :data:`PROBE_LAYER` see for the images ``x``: ``conv``,
    that convolution's output, and ``relu``, the input of the ReLU after it (the
    normaliser's output; without one, the same array). Computed layer by layer in
    training mode, as during a training step (batch norm uses ``x``'s own
    statistics), and leaving batch norm's running averages as they were."""
    from mnist_cnn.scratch.layers import BatchNormalization, ReLU

    names = [layer.name for layer in net.layers]
    start = names.index(PROBE_LAYER)
    relu = next(i for i in range(start, len(names)) if isinstance(net.layers[i], ReLU))
    kept = [(layer, dict(layer.state)) for layer in net.layers[:relu]
            if isinstance(layer, BatchNormalization)]
    out = {}
    for i, layer in enumerate(net.layers[:relu]):
        x = layer.forward(x, training=True)
        if i == start:
            out["conv"] = x
    out["relu"] = x
    for layer, state in kept:
        layer.state = state
    return out


def _figure(value) -> float | None:
    """``value`` to :data:`PROBE_DIGITS` significant digits; None if not finite."""
    return float(f"{value:.{PROBE_DIGITS}g}") if np.isfinite(value) else None


def probe_statistics(values) -> dict:
    """The mean, standard deviation and :data:`PROBE_PERCENTILES` of all of
    ``values`` (every image, position and channel), computed in float64 and kept to
    :data:`PROBE_DIGITS` significant digits; None where not finite."""
    v = np.asarray(values, dtype=np.float64).ravel()
    with np.errstate(all="ignore"):
        stats = [v.mean(), v.std(), *np.percentile(v, PROBE_PERCENTILES)]
    return {k: _figure(s) for k, s in zip(PROBE_STATS, stats, strict=True)}


def kernel_norm(net) -> float | None:
    """The L2 norm of :data:`PROBE_LAYER`'s kernel, to :data:`PROBE_DIGITS`
    significant digits (None if not finite)."""
    w = next(layer for layer in net.layers if layer.name == PROBE_LAYER).params["W"]
    with np.errstate(all="ignore"):
        return _figure(np.sqrt((w.astype(np.float64) ** 2).sum()))


def probe_steps(n_train: int = NORM_N_TRAIN, epochs: int = NORM_EPOCHS,
                batch_size: int = NORM_BATCH_SIZE) -> list[int]:
    """The numbers of training steps taken when the probe looks: those of
    :data:`PROBE_AT` the run reaches (0: the initial weights), and after the last."""
    total = -(-n_train // batch_size) * epochs
    return [step for step in PROBE_AT if step < total] + [total]


class _Probing:
    """``fit``'s engine, with a look at the probe images before each step of
    :data:`PROBE_AT` (:func:`probe_inputs`: no random numbers drawn, no state
    changed, so the training is the same with or without it)."""

    def __init__(self, engine, x):
        self.engine, self.net, self.x = engine, engine.net, x
        self.steps = 0
        self.looks: list[tuple[int, dict, float | None]] = []

    def __enter__(self):
        self.engine.__enter__()
        return self

    def __exit__(self, *exc):
        return self.engine.__exit__(*exc)

    def look(self) -> None:
        stats = {site: probe_statistics(v) for site, v in probe_inputs(self.net, self.x).items()}
        self.looks.append((self.steps, stats, kernel_norm(self.net)))

    def loss_and_backward(self, x, y, training: bool = True):
        if self.steps in PROBE_AT:
            self.look()
        self.steps += 1
        return self.engine.loss_and_backward(x, y, training)


def normalisation_run(label: str, seed: int, x, y, x_val, y_val,
                      epochs: int = NORM_EPOCHS, probe=None) -> dict:
    """Train :func:`normalised_model` of ``label``'s variant (a key of
    :data:`NORM_RUNS`) from ``seed`` by plain SGD at ``label``'s learning rate.
    Returns per-epoch ``loss`` (the training loss ``fit`` reports; None where not
    finite) and ``val`` (validation accuracy, inference mode: batch norm uses its
    running averages), the training ``seconds`` and the final ``kernel_norm``
    (:func:`kernel_norm`). With ``probe`` (images) also ``probe``: the ``steps``
    it looked after (:func:`probe_steps`), the :func:`probe_statistics` of each of
    :data:`PROBE_SITES` at each, and the ``kernel_norm`` at each."""
    from mnist_cnn.scratch.optim import SGD
    from mnist_cnn.scratch.train import fit

    variant, lr = NORM_RUNS[label]
    net = normalised_model(variant, seed)
    engine = FastEngine(net, shards=1)
    if probe is not None:
        engine = _Probing(engine, probe)
    # a diverging run overflows: that is its result, not something to warn about
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        history = fit(net, x, y, epochs=epochs, batch_size=NORM_BATCH_SIZE,
                      optimizer=SGD(lr, momentum=0.0), seed=seed,
                      validation_data=(x_val, y_val), progress=False, engine=engine)
        if probe is not None:
            engine.look()                                  # after the last step
    run = {"loss": [float(v) if np.isfinite(v) else None for v in history["loss"]],
           "val": [float(v) for v in history["val_accuracy"]],
           "seconds": float(sum(history["seconds"])), "kernel_norm": kernel_norm(net)}
    if probe is not None:
        run["probe"] = {"steps": [step for step, _, _ in engine.looks],
                        **{site: {stat: [stats[site][stat] for _, stats, _ in engine.looks]
                                  for stat in PROBE_STATS} for site in PROBE_SITES},
                        "kernel_norm": [norm for _, _, norm in engine.looks]}
    return run


def normalisation_data(cache_dir=None):
    """The normalisation experiment's images: ``(x, y), (x_val, y_val), probe``, the
    first 3,000 training images, the first 2,000 validation digits, and the first
    :data:`PROBE_IMAGES` of those as the probe."""
    (x, y), (x_val, y_val) = experiment_data(NORM_N_TRAIN, N_VAL, cache_dir=cache_dir)
    return (x, y), (x_val, y_val), x_val[:PROBE_IMAGES]


def normalisation(seeds=NORM_SEEDS, progress: bool = True, cache_dir=None) -> dict:
    """Every variant at every learning rate from every seed, the runs at
    :data:`NORM_PROBE_LR` with the probe; the experiment's record."""
    (x, y), (x_val, y_val), probe = normalisation_data(cache_dir)

    def run(label, seed):
        looked = NORM_RUNS[label][1] == NORM_PROBE_LR
        return normalisation_run(label, seed, x, y, x_val, y_val,
                                 probe=probe if looked else None)

    return _every_seed("normalisation", NORM_SETTINGS, NORM_RUNS, seeds, run, progress)


def _check_normalisation(record: dict) -> None:
    """What load() checks beyond the common keys: a kernel norm per run, and the
    probe's curves in the runs at the probe's learning rate."""
    def numbers(values, length):
        return len(values) == length and all(
            v is None or (isinstance(v, float) and np.isfinite(v)) for v in values)

    steps = probe_steps()
    for label, (_, lr) in NORM_RUNS.items():
        for run in record["runs"][label]:
            if not numbers([run["kernel_norm"]], 1):
                raise ValueError(f"{label!r}, seed {run['seed']}: no kernel_norm")
            if lr != NORM_PROBE_LR:
                continue
            probe = run["probe"]
            if probe["steps"] != steps or not numbers(probe["kernel_norm"], len(steps)) \
                    or not all(numbers(probe[site][stat], len(steps))
                               for site in PROBE_SITES for stat in PROBE_STATS):
                raise ValueError(f"{label!r}, seed {run['seed']}: the probe is not "
                                 f"{len(steps)} looks at steps {steps}")


def largest_stable_lr(record: dict, variant: str) -> float | None:
    """The largest learning rate of the grid at which no seed of ``variant``
    diverged (:func:`diverged`), or None if every rate diverged somewhere."""
    stable = [lr for lr in NORM_LRS
              if not diverged(record, norm_label(variant, lr)).any()]
    return max(stable) if stable else None


def probe_drift(record: dict, variant: str, site: str) -> np.ndarray:
    """One value per seed: how far the distribution at ``site`` moved during
    training, for ``variant`` at :data:`NORM_PROBE_LR`: the largest distance of any
    of its percentiles (:data:`PROBE_PERCENTILES`), at any look, from where that
    percentile was at step 0, in units of the standard deviation at step 0."""
    start = probe_curve(record, variant, site, "sd")[:, 0]
    moved = [np.abs(curve - curve[:, :1]).max(axis=1)
             for curve in (probe_curve(record, variant, site, f"p{q}")
                           for q in PROBE_PERCENTILES)]
    return np.max(moved, axis=0) / start


def probe_curve(record: dict, variant: str, site: str, stat: str) -> np.ndarray:
    """(seeds, looks) array of the probe's ``stat`` at ``site`` over training, for
    ``variant`` at :data:`NORM_PROBE_LR` (NaN where it was not finite); ``site``
    "kernel_norm" gives the kernel's norm (``stat`` is then ignored)."""
    runs = record["runs"][norm_label(variant, NORM_PROBE_LR)]
    rows = [r["probe"]["kernel_norm"] if site == "kernel_norm" else r["probe"][site][stat]
            for r in runs]
    return np.array(rows, dtype=np.float64)


SEARCH_N_TRAIN = OPT_N_TRAIN
SEARCH_EPOCHS = 2         # a search screens settings with short runs
SEARCH_TRIALS = 9         # the budget: training runs per search
SEARCH_SEEDS = (0, 1, 2)
# AdamW's two settings and the range each is searched over, on a log scale
SEARCH_BOX = {"lr": (1e-4, 1e-1), "weight_decay": (1e-5, 1e-1)}
SEARCHES = ("grid", "random")
SEARCH_SETTINGS = {"n_train": SEARCH_N_TRAIN, "n_val": N_VAL, "n_holdout": OPT_N_HOLDOUT,
                   "validation_split": VALIDATION_SIZE, "epochs": SEARCH_EPOCHS,
                   "batch_size": OPT_BATCH_SIZE, "dropout": DROPOUT, "optimizer": "AdamW",
                   "trials": SEARCH_TRIALS, "box": SEARCH_BOX, "engine": "FastEngine",
                   "shards": SHARDS}


def search_points(search: str, seed: int, trials: int = SEARCH_TRIALS,
                  box: dict = SEARCH_BOX) -> list[dict]:
    """The settings a search of ``trials`` runs tries, each a dict of ``box``'s keys.

    "grid": k = sqrt(trials) values per setting, the centres of k equal slices of
    its log range, every combination (the same whatever the seed). "random": each
    setting drawn log-uniformly from its range, independently, ``trials`` times,
    from ``np.random.default_rng(seed)``."""
    names, logs = list(box), np.log10(np.array(list(box.values()), dtype=np.float64))
    if search == "grid":
        k = round(trials ** (1 / len(names)))
        if k ** len(names) != trials:
            raise ValueError(f"a grid over {len(names)} settings needs a power of "
                             f"{len(names)} trials, got {trials}")
        centres = (np.arange(k) + 0.5) / k
        axes = [lo + centres * (hi - lo) for lo, hi in logs]
        exponents = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(names))
    elif search == "random":
        u = np.random.default_rng(seed).random((trials, len(names)))
        exponents = logs[:, 0] + u * (logs[:, 1] - logs[:, 0])
    else:
        raise ValueError(f"search is 'grid' or 'random', got {search!r}")
    return [{name: float(10 ** e) for name, e in zip(names, row, strict=True)}
            for row in exponents]


def search_trial(point: dict, seed: int, x, y, x_val, y_val, holdout,
                 epochs: int = SEARCH_EPOCHS) -> dict:
    """One run of a search: the course network from ``seed`` trained with AdamW at
    ``point`` (its ``lr`` and ``weight_decay``), scored on the validation digits
    (``val``, what a search chooses by) and on ``holdout`` (chosen by nothing) after
    every epoch. Returns the point with per-epoch ``loss`` (None where not finite),
    ``val`` and ``holdout``, and the training ``seconds``."""
    from mnist_cnn.scratch.optim import AdamW
    from mnist_cnn.scratch.train import build_model, fit, loss_and_accuracy

    model = build_model(seed=seed)
    history = fit(model, x, y, epochs=epochs, batch_size=OPT_BATCH_SIZE,
                  optimizer=AdamW(point["lr"], weight_decay=point["weight_decay"]),
                  seed=seed, validation_data=(x_val, y_val), progress=False,
                  engine=FastEngine(model), on_epoch_end=lambda epoch, net: {
                      "holdout": loss_and_accuracy(net, *holdout)["accuracy"]})
    return {**point,
            "loss": [float(v) if np.isfinite(v) else None for v in history["loss"]],
            "val": [float(v) for v in history["val_accuracy"]],
            "holdout": [float(v) for v in history["holdout"]],
            "seconds": float(sum(history["seconds"]))}


def search_run(search: str, seed: int, x, y, x_val, y_val, holdout) -> dict:
    """One search: :func:`search_trial` at each of :func:`search_points`.
    Returns {"trials": [...], "seconds": their training time}."""
    trials = [search_trial(point, seed, x, y, x_val, y_val, holdout)
              for point in search_points(search, seed)]
    return {"trials": [{k: v for k, v in t.items() if k != "seconds"} for t in trials],
            "seconds": sum(t["seconds"] for t in trials)}


def search(seeds=SEARCH_SEEDS, progress: bool = True, cache_dir=None) -> dict:
    """Grid and random search from every seed; the experiment's record."""
    (x, y), (x_digits, y_digits) = experiment_data(SEARCH_N_TRAIN, VALIDATION_SIZE,
                                                   cache_dir=cache_dir)
    x_val, y_val = x_digits[:N_VAL], y_digits[:N_VAL]
    holdout = x_digits[N_VAL:], y_digits[N_VAL:]
    return _every_seed("search", SEARCH_SETTINGS, SEARCHES, seeds, lambda name, seed:
                       search_run(name, seed, x, y, x_val, y_val, holdout), progress,
                       unit="search")


def _check_search(record: dict) -> None:
    """What load() checks of a search record: each search tried its own points, and
    every trial has its scores for every epoch."""
    for name, runs in record["runs"].items():
        for run in runs:
            tried = [[t[k] for k in SEARCH_BOX] for t in run["trials"]]
            points = [list(p.values()) for p in search_points(name, run["seed"])]
            # 10 ** x may differ in its last bit between two maths libraries
            if np.shape(tried) != np.shape(points) or not np.allclose(tried, points,
                                                                      rtol=1e-12, atol=0):
                raise ValueError(f"{name} search, seed {run['seed']}: not the points "
                                 f"search_points gives")
            for t in run["trials"]:
                if not all(len(t[key]) == SEARCH_EPOCHS and all(
                        isinstance(v, float) and 0 <= v <= 1 for v in t[key])
                        for key in ("val", "holdout")):
                    raise ValueError(f"{name} search, seed {run['seed']}: a trial without "
                                     f"{SEARCH_EPOCHS} accuracies")


def search_best(record: dict, name: str) -> dict:
    """Per seed, what search ``name`` chose: the trial with the highest last-epoch
    validation accuracy (the first of equals). Arrays over the seeds: ``val``,
    ``holdout`` (its accuracy on digits that chose nothing), ``lr``, ``weight_decay``."""
    chosen = [max(run["trials"], key=lambda t: t["val"][-1]) for run in record["runs"][name]]
    return {key: np.array([t[key][-1] if key in ("val", "holdout") else t[key]
                           for t in chosen]) for key in ("val", "holdout", *SEARCH_BOX)}


def _search_summary(record: dict, name: str) -> str:
    best = search_best(record, name)
    return (f"chosen: val {pm(best['val'])} %, holdout {pm(best['holdout'])} %, "
            f"lr {' '.join(f'{v:.1e}' for v in best['lr'])}")


# name -> what load() checks (the settings, the labels, the per-epoch keys every run
# has, epochs), the function that runs it, its default seeds, and what the command
# prints.
EXPERIMENTS = {
    "overfitting": {"about": "4 recipes on 1,000 training images, 12 epochs",
                    "settings": SETTINGS, "labels": tuple(RECIPES), "per_epoch": ACCURACIES,
                    "per_run": ("weight_norm",), "epochs": EPOCHS, "run": overfitting,
                    "seeds": SEEDS, "summary": ("train", "val", "gap")},
    "batchnorm": {"about": "the Keras network with and without BN, 3 epochs on 6,000 "
                           "images",
                  "settings": BN_SETTINGS, "labels": tuple(BN_MODELS), "per_epoch": ("val",),
                  "label_per_epoch": {"with BN": ("val_reestimated",)},
                  "epochs": BN_EPOCHS, "run": batchnorm, "seeds": SEEDS,
                  "summary": ("val", "val_reestimated"),
                  "summary_epochs": 1},
    "optimisers": {"about": "SGD and momentum at equal effective steps, Adam over "
                            "step sizes; 3,000 images, 4 epochs",
                   "settings": OPT_SETTINGS, "labels": tuple(OPTIMISERS),
                   "per_epoch": ("val", "holdout"),
                   "losses": ("loss",), "per_run": ("seconds",), "epochs": OPT_EPOCHS,
                   "run": optimisers, "seeds": OPT_SEEDS, "summary": ("val",),
                   "summary_epochs": 1, "summary_extra": _diverged_summary},
    "architectures": {"about": "7 networks from an MLP to a small ResNet; 8,000 images, "
                               "8 epochs, then shifted digits",
                      "settings": ARCH_SETTINGS, "labels": _arch_labels(),
                      "per_epoch": ("val",), "per_run": ("seconds",),
                      "curves": {"shifted": len(SHIFTS)}, "epochs": ARCH_EPOCHS,
                      "run": architectures, "seeds": ARCH_SEEDS, "summary": ("val",),
                      "summary_epochs": 1},
    "normalisation": {"about": "the course network without normalisation, with batch "
                               "or layer norm; plain SGD over learning rates, 3,000 "
                               "images, 3 epochs",
                      "settings": NORM_SETTINGS, "labels": tuple(NORM_RUNS),
                      "per_epoch": ("val",), "losses": ("loss",), "per_run": ("seconds",),
                      "epochs": NORM_EPOCHS, "run": normalisation, "seeds": NORM_SEEDS,
                      "summary": ("val",), "summary_epochs": 1,
                      "summary_extra": _diverged_summary, "check": _check_normalisation},
    "search": {"about": "grid against random search over AdamW's learning rate and weight "
                        "decay, 9 runs each; 3,000 images, 2 epochs",
               "settings": SEARCH_SETTINGS, "labels": SEARCHES, "per_epoch": (),
               "per_run": ("seconds",), "epochs": SEARCH_EPOCHS, "run": search,
               "seeds": SEARCH_SEEDS, "summary": (), "summary_extra": _search_summary,
               "check": _check_search},
}


# A difference between two recipes counts as a finding only beyond this many
# standard errors. It is a rough screen: a difference of pure noise passes it about 1
# time in 12 with 5 seeds a side and equal spreads (Welch's t, about 8 degrees of
# freedom: 8.1 % in simulation), 1 in 10 when one side's spread is 3 times the other's,
# and 1 in 9 to 1 in 7 with 3 seeds a side; so a page with several verdicts states the
# strong ones and treats a marginal one as a hint.
NOISE_SE = 2.0
# With ``compare(..., graded=True)``: a difference beyond NOISE_SE but under this many
# standard errors is "marginal" (a hint); from here on it is a finding. Pure noise
# reaches 3 standard errors about 1 time in 25 to 1 in 16 with 3 seeds a side.
FINDING_SE = 3.0


def compare(a, b, graded: bool = False) -> tuple[float, float, str]:
    """Per-seed values ``a`` against ``b``: (mean(a) - mean(b), the standard error of
    that difference, sqrt(sd_a^2/n_a + sd_b^2/n_b), and the verdict "higher", "lower"
    or "within seed noise" (a difference of at most NOISE_SE standard errors: not shown
    to exist, which is not the same as shown not to exist)). With ``graded``, a
    difference of more than NOISE_SE but less than FINDING_SE standard errors is
    "higher (marginal)" or "lower (marginal)", and "higher"/"lower" need FINDING_SE.
    Each side needs at least 3 finite values."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    for side in (a, b):
        if side.ndim != 1 or len(side) < 3 or not np.isfinite(side).all():
            raise ValueError(f"compare needs at least 3 finite per-seed values a side, got {side}")
    diff = float(a.mean() - b.mean())
    se = float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
    if abs(diff) <= NOISE_SE * se:
        return diff, se, "within seed noise"
    verdict = "higher" if diff > 0 else "lower"
    if graded and abs(diff) < FINDING_SE * se:
        verdict += " (marginal)"
    return diff, se, verdict


def _command_line(args: argparse.Namespace) -> str:
    parts = ["python", "-m", "mnist_cnn", "experiment", args.name]
    if args.seeds is not None and tuple(args.seeds) != EXPERIMENTS[args.name]["seeds"]:
        parts += ["--seeds", *map(str, args.seeds)]
    if args.out:
        parts += ["--out", str(args.out)]
    return shlex.join(parts)


def cli_experiment(args: argparse.Namespace) -> int:
    """``python -m mnist_cnn experiment NAME``: run it, write its record atomically,
    print each label's last-epoch figures (mean ± sd over the seeds)."""
    from mnist_cnn._io import library_versions, write_json

    if args.name not in EXPERIMENTS:
        listing = "\n".join(f"  {name:14s} {spec['about']} (seeds "
                             f"{' '.join(map(str, spec['seeds']))})"
                             for name, spec in EXPERIMENTS.items())
        if args.name == "list":
            print(f"The experiments the book reports:\n{listing}")
            return 0
        raise ValueError(f"no experiment {args.name!r}; the experiments are:\n{listing}")
    spec = EXPERIMENTS[args.name]
    seeds = list(spec["seeds"] if args.seeds is None else args.seeds)
    if len(set(seeds)) != len(seeds) or len(seeds) < 3 or min(seeds) < 0:
        raise ValueError(f"--seeds takes at least 3 different non-negative seeds, got {seeds}")
    out = Path(args.out).expanduser() if args.out else experiment_path(args.name)
    if out.suffix != ".json" or out.is_dir():     # said now, not after minutes of training
        raise ValueError(f"--out must be a .json file, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    record = spec["run"](tuple(seeds), progress=True, cache_dir=args.cache_dir)
    record["wall_seconds"] = round(time.perf_counter() - start, 1)
    record["command"] = _command_line(args)
    record["created"] = time.strftime("%Y-%m-%d")
    record["arithmetic"] = arithmetic()     # the rounding the reruns can be checked under
    record["versions"] = library_versions(*(("tensorflow", "keras")
                                            if args.name == "batchnorm" else ()))
    write_json(out, record)
    print(f"Experiment {args.name}: {len(spec['labels'])} x {len(seeds)} seeds in "
          f"{record['wall_seconds']:.0f} s -> {out} (mean ± sd over the seeds of the last "
          f"{spec.get('summary_epochs', ENDPOINT_EPOCHS)} epoch(s):)")
    for label in spec["labels"]:
        run = record["runs"][label][0]
        figures = []
        for key in spec["summary"]:
            if key in run or (key == "gap" and "train" in run):
                mean, sd = mean_sd(final(record, label, key,
                                         spec.get("summary_epochs", ENDPOINT_EPOCHS)))
                figures.append(f"{key} {mean:+.1%} ± {sd:.1%}" if key == "gap"
                               else f"{key} {mean:.1%} ± {sd:.1%}")
        if "summary_extra" in spec:
            figures.append(spec["summary_extra"](record, label))
        width = max(map(len, spec["labels"]))
        print(f"  {label:{width}s} " + "   ".join(figures))
    return 0
