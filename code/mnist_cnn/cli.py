"""Command line: ``python -m mnist_cnn <command> ...`` (or ``mnist-cnn``).

The parser lives here; each command's work lives in the module that owns the
idea, imported only when that command runs so ``--help`` stays instant, and
neither ``data`` nor a command given a NumPy model (``.npz``) imports TensorFlow.

Every command that takes ``--model`` takes both formats, a Keras file
(``.keras``/``.h5``) and a from-scratch NumPy network (``.npz``), except
``bench predict``, which measures a Keras model against its bridged NumPy twin.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> "module:function"; the function takes the parsed args, returns an exit code.
_HANDLERS = {
    "data": "mnist_cnn.cli:_cmd_data",
    "train-numpy": "mnist_cnn.train_commands:cli_train_numpy",
    "train-keras": "mnist_cnn.train_commands:cli_train_keras",
    "evaluate": "mnist_cnn.evaluate:cli_evaluate",
    "predict": "mnist_cnn.predict:cli_predict",
    "export-web": "mnist_cnn.web:cli_export_web",
    "experiment": "mnist_cnn.experiments:cli_experiment",
    "grade": "mnist_cnn.assignments.grader:cli_grade",
}
# The model formats every --model takes (bench predict excepted), for the help texts.
_BOTH = "a Keras model (.keras/.h5) or a from-scratch NumPy model (.npz)"
_DEFAULT_MODEL = "default: $MNIST_CNN_MODEL if set, else models/cnn_model.keras"
_BENCHES = {
    "conv": ("mnist_cnn.bench.conv:main", "vectorised conv vs naive loops vs tf.nn.conv2d"),
    "train": ("mnist_cnn.bench.train:main", "one epoch: plain and fast NumPy vs Keras"),
    "predict": ("mnist_cnn.bench.predict:main", "single-image latency and cold start"),
    "canvas": ("mnist_cnn.bench.canvas:main",
               "canvas-simulated MNIST: our preprocessing vs naive resize"),
}


def _cmd_data(args: argparse.Namespace) -> int:
    from mnist_cnn import data

    loaded, report = data.load_mnist_with_report(args.cache_dir, progress=not args.quiet)
    if report.replaced:
        print(f"Replaced corrupt cached file(s): {', '.join(report.replaced)}")
    (_, y_train), (_, y_test) = loaded
    print(data.summary_line(report, loaded))
    if args.verbose:
        import numpy as np

        from mnist_cnn.shapes import NUM_CLASSES

        for split, y in (("train", y_train), ("test", y_test)):
            counts = np.bincount(y, minlength=NUM_CLASSES)
            print(f"  {split:5s} per digit: " + " ".join(f"{d}:{c}" for d, c in enumerate(counts)))
    return 0


def _add_common_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", default=None,
                   help="MNIST cache folder (default: $MNIST_CNN_DATA or ~/.cache/mnist_cnn)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_cnn",
        description="CNN From Scratch: data, training, evaluation, prediction and benchmarks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_data_command, _train_commands, _evaluate_command, _predict_command,
                _export_web_command, _experiment_command, _grade_command, _bench_command):
        add(sub)
    return parser


def _data_command(sub) -> None:
    """data: fetch and verify MNIST."""
    p = sub.add_parser("data", help="fetch and verify MNIST, print a summary")
    _add_common_data(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="also print per-digit counts")


def _train_commands(sub) -> None:
    """train-numpy and train-keras: the two training commands."""
    for command, what, out in [
            ("train-numpy", "the from-scratch NumPy CNN (with the speed layer)",
             "models/numpy_cnn.npz"),
            ("train-keras", "the production Keras model", "models/cnn_model.keras")]:
        p = sub.add_parser(command, help=f"train {what}: 55,000 images, the epoch chosen on "
                                         "5,000 validation images, tested once on 10,000")
        p.add_argument("--epochs", type=int, default=None,
                       help="epochs (default: the committed recipe)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--batch-size", type=int, default=None)
        p.add_argument("--limit", type=int, default=None,
                       help="train on the first N images only (quick runs)")
        p.add_argument("--out", default=None, help=f"output file (default: {out})")
        _add_common_data(p)


def _evaluate_command(sub) -> None:
    """evaluate: a model's test figures."""
    p = sub.add_parser("evaluate",
                       help="test accuracy, per-class accuracy and confusion matrix of a model")
    p.add_argument("--model", default=None,
                   help=f"{_BOTH}; {_DEFAULT_MODEL}")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    _add_common_data(p)


def _predict_command(sub) -> None:
    """predict: the digit in image files."""
    p = sub.add_parser("predict", help="predict the digit in image files")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--model", default=None, help=f"{_BOTH}; {_DEFAULT_MODEL}")
    p.add_argument("--engine", choices=("keras", "numpy"), default=None,
                   help="keras: the Keras model called directly; numpy: the same weights in "
                        "the from-scratch NumPy network. Default: the model's own engine "
                        "(keras for a Keras model, numpy for a .npz). A .npz model runs on "
                        "the numpy engine only (and never imports TensorFlow): "
                        "--engine keras with a .npz is an error")


def _export_web_command(sub) -> None:
    """export-web: the model for the book's in-page canvas."""
    p = sub.add_parser("export-web",
                       help="export the model for the in-page canvas (weights.js + manifest)")
    p.add_argument("--model", default=None, help=f"{_BOTH}; {_DEFAULT_MODEL}")
    p.add_argument("--out", default=None,
                   help="output folder (default: book/_static/digit_widget)")
    _add_common_data(p)


def _experiment_command(sub) -> None:
    """experiment: the book's training experiments."""
    p = sub.add_parser("experiment",
                       help="run a training experiment the book reports, over several seeds, "
                            "and write its results (models/experiments/NAME.json)")
    # The experiments and their default seeds are named in mnist_cnn.experiments only
    # (importing it here would slow every command's start): `experiment list` lists them.
    p.add_argument("name", metavar="NAME",
                   help="the experiment to run; `experiment list` lists them with what "
                        "each measures and its default seeds")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="seeds, at least 3 (default: the experiment's own)")
    p.add_argument("--out", default=None,
                   help="output file (default: models/experiments/NAME.json)")
    _add_common_data(p)


def _grade_command(sub) -> None:
    """grade: otter-grader on handed-in notebooks."""
    p = sub.add_parser("grade", help="grade handed-in assignment notebooks (otter-grader; "
                                     "`make assignments` writes the autograders first)")
    p.add_argument("notebooks", nargs="+", metavar="NOTEBOOK")
    p.add_argument("--autograder", default=None,
                   help="otter autograder zip (default: the notebook's assignment in "
                        "_build/assignments/autograder)")
    p.add_argument("--csv", default=None, help="also write the scores to this CSV file")
    p.add_argument("--timeout", type=float, default=1800,
                   help="seconds allowed per notebook (default 1800)")
    p.add_argument("--feedback", default=None, metavar="DIR",
                   help="also write each notebook's report to DIR/<notebook>.txt")
    p.add_argument("--jobs", type=int, default=1,
                   help="notebooks graded at once (each in its own process; default 1)")
    p.add_argument("-q", "--quiet", action="store_true", help="scores only, no feedback")


def _bench_command(sub) -> None:
    """bench: the benchmarks."""
    p = sub.add_parser("bench", help="benchmarks that print measured figures")
    bsub = p.add_subparsers(dest="bench", metavar="BENCH")
    for name, (_, help_text) in _BENCHES.items():
        b = bsub.add_parser(name, help=help_text)
        b.add_argument("--seed", type=int, default=0)
        b.add_argument("--limit", type=int, default=None,
                       help="use only N images/examples (quick runs)")
        b.add_argument("--repeats", type=int, default=None, help="timing repetitions")
        b.add_argument("--model", default=None,
                       help="model file, where the benchmark uses one (predict: a Keras "
                            f"model; canvas: {_BOTH})")
        b.add_argument("--batch-size", type=int, default=None)
        b.add_argument("--json", action="store_true", help="also print the figures as JSON")
        _add_common_data(b)


def _resolve(target: str):
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was raised while handling, a KeyboardInterrupt."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "bench":
        if args.bench is None:
            parser.parse_args(["bench", "--help"])
        target = _BENCHES[args.bench][0]
    else:
        target = _HANDLERS[args.command]

    # A hosting platform stops a job with SIGTERM: treat it like Ctrl-C so the
    # atomic writers clean up their temp files and the previous model stays intact.
    import signal

    from mnist_cnn.data import MnistUnavailableError

    def _terminate(signum, frame):
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not in the main thread (e.g. called from a test runner thread)
        pass

    try:
        try:
            return int(_resolve(target)(args) or 0)
        except SystemError as exc:
            # Ctrl-C landing inside a C extension (TensorFlow) can surface as a
            # SystemError chained to the KeyboardInterrupt: still an interrupt.
            if interrupted(exc):
                raise KeyboardInterrupt from exc
            raise
    except KeyboardInterrupt:
        print("\nInterrupted; no partial files were written.", file=sys.stderr)
        return 130
    except (MnistUnavailableError, OSError, ValueError) as exc:
        # Expected failures (no data, missing/corrupt model, bad arguments, a file
        # that cannot be written, e.g. a full disk): a clear message, not a traceback.
        print(f"error: {exc}", file=sys.stderr)
        return 1
