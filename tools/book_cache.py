"""Clear the book's execution cache when what the chapters read has changed.

    python -m tools.book_cache [CACHE]      # default: _build/.jupyter_cache

The book is built with ``execute_notebooks: cache``: jupyter-cache keys each executed
chapter on its code cells alone, and a chapter whose code has not changed is not run
again. But a chapter's numbers also come from what its code reads: the course library
(``code/``), the committed models and their records (``models/``), the widget's files
(``book/_static/digit_widget/``: its export's manifest holds the weights' SHA-256), the
app the chapters show (``app/``, its settings and screenshot) and the packages
installed (``pyproject.toml``, ``requirements.txt``). Had any of them changed, an unchanged
chapter would still print the old numbers.

So ``make book`` (and ``make pdf``, and the test suite's build) call this first: it
hashes those inputs (and the models ``$MNIST_CNN_MODELS`` or ``$MNIST_CNN_MODEL`` point
at, if set), compares the hash with the one stored in the cache folder
(:data:`STAMP`) and, if they differ, or no hash is stored, empties the cache, so the
build executes every chapter again. A restored cache (the CI's) is checked the same way,
since the hash travels inside it. The chapters' own text and code are not inputs
here: jupyter-cache already tells when those change.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAMP = "inputs.sha256"
# What the chapters read, beside their own text: (folder or file, its files' pattern).
INPUTS = (("code", "**/*.py"), ("models", "**/*"), ("book/_static/digit_widget", "*"),
          ("app", "**/*"), ("book/_static/app_screenshot.png", ""), ("pyproject.toml", ""),
          ("requirements.txt", ""), (".streamlit/config.toml", ""))
# The export's weights: its manifest (hashed) holds their SHA-256.
DERIVED = {"book/_static/digit_widget/weights.js"}
PARTIAL = {".tmp", ".part"}        # a file being written (atomically, then renamed)
# Where the chapters' models come from when set (mnist_cnn.paths), not models/.
MODEL_VARIABLES = ("MNIST_CNN_MODELS", "MNIST_CNN_MODEL")


def _files(path: Path, pattern: str) -> set[Path]:
    if path.is_file():
        return {path}
    return {p for p in path.glob(pattern) if p.is_file() and p.suffix not in PARTIAL
            and "__pycache__" not in p.parts} if path.is_dir() else set()


def input_files(root: Path = ROOT) -> list[Path]:
    """The files the chapters read beside their own text, sorted: the checkout's, and
    the models the environment points the library at instead of ``models/``."""
    found = set()
    for where, pattern in INPUTS:
        found |= _files(root / where, pattern)
    for name in MODEL_VARIABLES:
        if os.environ.get(name):          # a relative one as a chapter, run in book/, reads it
            found |= _files((root / "book" / Path(os.environ[name]).expanduser()).resolve(),
                            "**/*")
    return sorted(p for p in found if _relative(p, root) not in DERIVED)


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def inputs_hash(root: Path = ROOT) -> str:
    """SHA-256 over the input files' paths (relative to ``root``) and contents, and
    the model variables' values."""
    digest = hashlib.sha256()
    for name in MODEL_VARIABLES:
        digest.update(f"{name}={os.environ.get(name, '')}\0".encode())
    for path in input_files(root):
        digest.update(_relative(path, root).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def check(cache: Path, root: Path = ROOT) -> bool:
    """Empty ``cache`` unless it was filled from these inputs; True if it was emptied.
    Afterwards the cache folder exists and holds the inputs' hash."""
    cache = Path(cache)
    now = inputs_hash(root)
    stamp = cache / STAMP
    kept = stamp.is_file() and stamp.read_text().strip() == now
    cleared = not kept and cache.is_dir() and any(
        p.name != STAMP for p in cache.iterdir())
    if not kept:
        shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    stamp.write_text(now + "\n")
    return cleared


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", nargs="?", default=str(ROOT / "_build" / ".jupyter_cache"))
    args = parser.parse_args(argv)
    if check(Path(args.cache)):
        print("What the chapters read (the library, the models, the widget, the app or "
              "the requirements) changed since they were executed: every chapter runs "
              "again.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
