"""Clear the book's execution cache when what the chapters read has changed.

    python -m tools.book_cache [CACHE]      # default: _build/.jupyter_cache

The book is built with ``execute_notebooks: cache``: jupyter-cache keys each executed
chapter on its code cells alone, and a chapter whose code has not changed is not run
again. But a chapter's numbers also come from what its code reads: the course library
(``code/``), the committed models and their records (``models/``), the widget's files
(``book/_static/digit_widget/``, whose ``weights.js`` is exported from those two) and
the packages installed (``pyproject.toml``). Had any of them changed, an unchanged
chapter would still print the old numbers.

So ``make book`` (and ``make pdf``, and the test suite's build) call this first: it
hashes those inputs, compares the hash with the one stored in the cache folder
(:data:`STAMP`) and, if they differ, or no hash is stored, empties the cache, so the
build executes every chapter again. A restored cache (the CI's) is checked the same way,
since the hash travels inside it. The chapters' own text and code are not inputs
here: jupyter-cache already tells when those change.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAMP = "inputs.sha256"
# What the chapters read, beside their own text: (folder or file, its files' pattern).
INPUTS = (("code", "**/*.py"), ("models", "**/*"), ("book/_static/digit_widget", "*"),
          ("pyproject.toml", ""))
# Made from other inputs (the export, from the model and the library), or not read.
DERIVED = {"weights.js", "manifest.json"}
PARTIAL = {".tmp", ".part"}        # a file being written (atomically, then renamed)


def input_files(root: Path = ROOT) -> list[Path]:
    """The files the chapters read beside their own text, sorted."""
    found = set()
    for where, pattern in INPUTS:
        path = root / where
        if path.is_file():
            found.add(path)
        elif path.is_dir():
            found |= {p for p in path.glob(pattern) if p.is_file()
                      and p.name not in DERIVED and p.suffix not in PARTIAL
                      and "__pycache__" not in p.parts}
    return sorted(found)


def inputs_hash(root: Path = ROOT) -> str:
    """SHA-256 over the input files' paths (relative to ``root``) and contents."""
    digest = hashlib.sha256()
    for path in input_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
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
        print("The library, the models or the widget changed since the chapters were "
              "executed: every chapter runs again.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
