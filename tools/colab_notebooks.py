"""Write (or check) the notebook copy of each chapter that the Colab button opens.

Colab opens only ``.ipynb`` files stored on GitHub, and the chapters are MyST
Markdown notebooks (``book/*.md``). So each chapter has a generated, *unexecuted*
``book/<chapter>.ipynb`` beside it: the chapter as jupytext reads it, plus one
setup cell before the first code cell. That cell does something only on Colab
(clone the repository, install the course library, work from the checkout's
``book/`` folder, as the book build does); anywhere else it does nothing.
sphinx-book-theme points the launch buttons at a same-named ``.ipynb`` when one
exists, and the book build ignores these files (``exclude_patterns``).

The ``.md`` is the source: never edit the ``.ipynb``. After changing a chapter::

    make notebooks                               # rewrite the stale ones
    python tools/colab_notebooks.py --check      # exit status 1 if any is stale

The repository URL and branch come from ``_config.yml`` (``repository``), the
same values the launch buttons use. tests/test_chapters.py fails when a notebook
differs from what this writes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from string import Template

import jupytext
import nbformat
import yaml
from mnist_cnn._io import atomic_write

ROOT = Path(__file__).resolve().parents[1]
# Colab's working directory; the clone goes beside the notebook there.
COLAB_CHECKOUT = "/content/cnn-from-scratch"

SETUP_NOTE = (
    "**On Google Colab?** Run the next cell first: it fetches the course repository "
    "and installs its library (a few minutes; Colab may restart once, then run the "
    "cell again). Anywhere else it does nothing."
)

# Why each step: Colab has only this notebook (hence the clone); a running kernel
# does not see an editable install (hence a plain `pip install`); packages Colab
# had already imported keep their old version until a restart; chapters open
# files relative to book/, and `python -m mnist_cnn` subprocesses find the models
# through $MNIST_CNN_MODELS (a plain install has no checkout to find them in).
SETUP_CODE = Template('''\
# Colab only: fetch the course and install its library. Elsewhere this cell does nothing.
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess
    from importlib import metadata, util

    REPOSITORY, BRANCH = $repo_url, $branch
    CHECKOUT = $checkout

    def run(*cmd):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            output = (proc.stdout + proc.stderr)[-3000:]
            raise RuntimeError(f"{' '.join(cmd)} failed:\\n{output}")

    if not os.path.isdir(CHECKOUT):
        print("Fetching the course repository...")
        run("git", "clone", "--quiet", "--depth=1", "--branch", BRANCH, REPOSITORY, CHECKOUT)
    if util.find_spec("mnist_cnn") is None:
        print("Installing the course library and its dependencies (a few minutes)...")
        before = {d.metadata["Name"]: d.version for d in metadata.distributions()}
        run(sys.executable, "-m", "pip", "install", "--quiet", CHECKOUT)
        changed = {d.metadata["Name"] for d in metadata.distributions()
                   if before.get(d.metadata["Name"], d.version) != d.version}
        loaded = {dist for module, dists in metadata.packages_distributions().items()
                  if module in sys.modules for dist in dists}
        if changed & loaded:
            print(f"Upgraded {', '.join(sorted(changed & loaded))}, which were already loaded: "
                  "restarting the runtime. Run this cell again, then the rest.")
            os.kill(os.getpid(), 9)
    os.environ["MNIST_CNN_MODELS"] = os.path.join(CHECKOUT, "models")
    os.chdir(os.path.join(CHECKOUT, "book"))
    print(f"Ready: the course library is installed, working in {os.getcwd()}")''')


def repository() -> tuple[str, str]:
    """(URL, branch) of the repository, from _config.yml."""
    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    return repo["url"], repo.get("branch", "main")


def chapters() -> list[Path]:
    """Every page in _toc.yml that is a notebook (has a kernelspec), as .md paths."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc.get("parts", []) for c in part["chapters"]]
    paths = [ROOT / f"{f}.md" for f in files]
    return [p for p in paths if "kernelspec" in jupytext.read(p, fmt="md:myst").metadata]


def notebook_path(chapter: Path) -> Path:
    return chapter.with_suffix(".ipynb")


def setup_cell_source(repo_url: str, branch: str, checkout: str = COLAB_CHECKOUT) -> str:
    # JSON strings are Python string literals (in the cell's double-quote style).
    return SETUP_CODE.substitute(repo_url=json.dumps(repo_url), branch=json.dumps(branch),
                                 checkout=json.dumps(checkout))


def _stable_ids(cells) -> None:
    """Cell ids from the cell's content, so regenerating gives the same file and an
    edit changes only the ids of the cells it touches."""
    seen: dict[str, int] = {}
    for cell in cells:
        if cell.get("id", "").startswith("colab-setup"):
            continue
        digest = hashlib.sha1(f"{cell.cell_type}\n{cell.source}".encode()).hexdigest()[:8]
        seen[digest] = seen.get(digest, 0) + 1
        cell["id"] = digest if seen[digest] == 1 else f"{digest}-{seen[digest]}"


def render(chapter: Path, repo_url: str | None = None, branch: str | None = None,
           checkout: str = COLAB_CHECKOUT) -> str:
    """The .ipynb text for ``chapter``: no outputs, the Colab setup cell added."""
    default_url, default_branch = repository()
    nb = jupytext.read(chapter, fmt="md:myst")
    nb.metadata = nbformat.from_dict({"kernelspec": nb.metadata["kernelspec"],
                                      "language_info": {"name": "python"}})
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    setup = [
        nbformat.v4.new_markdown_cell(SETUP_NOTE, id="colab-setup-note"),
        nbformat.v4.new_code_cell(
            setup_cell_source(repo_url or default_url, branch or default_branch, checkout),
            id="colab-setup"),
    ]
    nb.cells[first_code:first_code] = setup
    _stable_ids(nb.cells)
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit status 1 if a notebook is missing or stale")
    args = parser.parse_args(argv)
    pages = chapters()
    stale = []
    for chapter in pages:
        path, text = notebook_path(chapter), render(chapter)
        if path.is_file() and path.read_text() == text:
            continue
        stale.append(str(path.relative_to(ROOT)))
        if not args.check:
            with atomic_write(path, "w") as fh:
                fh.write(text)
    if args.check and stale:
        print(f"Stale Colab notebooks (run `make notebooks`): {', '.join(stale)}")
        return 1
    written = 0 if args.check else len(stale)
    print(f"Colab notebooks: {len(pages)} chapters, {written} written, "
          f"{len(pages) - len(stale)} already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
