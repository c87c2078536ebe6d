"""Execute the book's chapters in parallel into a build's execution cache.

    python -m tools.execute_chapters --cache DIR [--jobs N]

The book is built with ``execute_notebooks: cache``: Sphinx reads the chapters
one at a time and executes each one whose code is not in the cache, so the
build uses one core for most of its time. This tool executes the missing ones
first, ``--jobs`` at a time, exactly as myst-nb would (its own reader, the
chapter's folder as the working directory, no errors allowed, the cell
timeout of ``_config.yml``), and stores them under the key myst-nb looks them up
by; the build then finds them all.

The test suite's book build runs it first (``tests/_browser.py``), so that build
finishes sooner. ``make book`` does not: chapters that time things would then be
measured beside another chapter, and the published book prints those figures.

Nothing here can change what the book shows: a chapter whose execution fails is
left out of the cache, and the build executes it again and reports the error as
usual; a chapter that is stored under another key is executed again by the build.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import yaml

from tools.colab_notebooks import chapters

ROOT = Path(__file__).resolve().parents[1]


def read(path: Path):
    """The chapter as myst-nb reads it (None for a page that is not a notebook)."""
    from myst_nb.core.config import NbParserConfig
    from myst_nb.core.read import create_nb_reader
    from myst_parser.config.main import MdParserConfig

    text = path.read_text(encoding="utf-8")
    reader = create_nb_reader(str(path), MdParserConfig(), NbParserConfig(), text)
    return None if reader is None else reader.read(text)


def _timeout() -> int | None:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    return (config.get("execute") or {}).get("timeout")


def _execute(path: str, timeout: int | None):
    """Run in a worker: (path, executed notebook or None, seconds, error text)."""
    from jupyter_cache.executors.utils import single_nb_execution

    nb = read(Path(path))
    t0 = time.perf_counter()
    result = single_nb_execution(nb, cwd=str(Path(path).parent), timeout=timeout,
                                 allow_errors=False, meta_override=True)
    err = None if result.err is None else f"{type(result.err).__name__}: {result.err}"
    return path, (nb if err is None else None), time.perf_counter() - t0, err


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, help="the build's .jupyter_cache folder")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--dry-run", action="store_true",
                        help="only list the chapters that are not in the cache")
    args = parser.parse_args(argv)

    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(args.cache)
    todo = []
    for path in chapters():
        nb = read(path)
        if nb is None:
            continue
        try:
            cache.match_cache_notebook(nb)
        except KeyError:
            todo.append(path)
    print(f"execute_chapters: {len(todo)} chapter(s) to execute, {args.jobs} at a time",
          flush=True)
    if args.dry_run:
        print("\n".join(str(p.relative_to(ROOT)) for p in todo))
        return 0
    t0, timeout = time.perf_counter(), _timeout()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(_execute, str(p), timeout) for p in todo]
        for future in as_completed(futures):
            try:
                path, nb, seconds, err = future.result()
            except Exception as e:             # the build will execute it and report
                print(f"execute_chapters: a worker failed ({e}); the build will retry",
                      flush=True)
                continue
            name = Path(path).name
            if err is not None:
                print(f"execute_chapters: {name} failed ({err.splitlines()[0][:200]}); "
                      "the build will execute it and report", flush=True)
                continue
            stage = cache.add_nb_to_project(path)        # as myst-nb adds it
            cache.cache_notebook_bundle(
                CacheBundleIn(nb, stage.uri, data={"execution_seconds": seconds}),
                check_validity=False, overwrite=True)
            print(f"execute_chapters: {name} in {seconds:.1f} s", flush=True)
    print(f"execute_chapters: done in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
