"""Every chapter opens as a notebook (jupytext) and follows the course's shape,
and its Colab notebook (book/<chapter>.ipynb) is the chapter as it is now.

Execution is covered by the real Jupyter Book build in tests/test_site.py
(`jupyter-book build . -n -W --keep-going` executes every chapter and fails on
any error) and, for the Colab notebooks, by tests/test_colab.py; here we check
what a reader opening a chapter in JupyterLab or Colab gets.
"""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

from tools import colab_notebooks

ROOT = Path(__file__).resolve().parents[1]


def _chapters() -> list[Path]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [ROOT / f"{f}.md" for f in files]


CHAPTERS = _chapters()


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_is_a_valid_notebook(path):
    nb = jupytext.read(path)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert len(code) >= 3
    # Chapters use the installed library; they never patch the import path.
    assert any("mnist_cnn" in src for src in code)
    assert not any("sys.path" in src for src in code)
    # No committed outputs: the build executes the chapter.
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_has_the_course_shape(path):
    text = path.read_text()
    assert "Learning goals" in text
    assert "## Summary" in text
    assert "## Exercises" in text
    assert "{exercise}" in text and "{solution}" in text
    assert ":class: dropdown" in text
    first_code = next(c.source for c in jupytext.read(path).cells if c.cell_type == "code")
    assert "seed" in first_code.lower(), "seeds are set in the first code cell"


def test_every_markdown_file_in_book_is_in_the_toc():
    """A chapter left out of _toc.yml would silently not be built."""
    in_toc = {p.resolve() for p in CHAPTERS} | {(ROOT / "book" / "index.md").resolve()}
    on_disk = {p.resolve() for p in (ROOT / "book").glob("*.md")}
    assert on_disk - in_toc == set()


def test_every_chapter_has_a_colab_notebook_and_nothing_else_does():
    assert colab_notebooks.chapters() == CHAPTERS
    expected = {colab_notebooks.notebook_path(p) for p in CHAPTERS}
    assert set((ROOT / "book").glob("*.ipynb")) == expected


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_colab_notebook_is_the_chapter_plus_its_setup_cell(path):
    """What the Colab button opens is what `make notebooks` writes from the chapter
    now: a stale or hand-edited notebook fails here."""
    notebook = colab_notebooks.notebook_path(path)
    assert notebook.is_file(), f"{notebook.name} is missing: run `make notebooks`"
    assert notebook.read_text() == colab_notebooks.render(path), (
        f"{notebook.name} differs from {path.name}: run `make notebooks` and commit it")
    # Independently of how render() works: jupytext's cells, in order, unexecuted,
    # with the setup cell (and its note) as the first code cell.
    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    ids = [c.id for c in nb.cells]
    assert len(set(ids)) == len(ids)
    setup = ids.index("colab-setup")
    assert ids[setup - 1] == "colab-setup-note"
    assert all(c.cell_type != "code" for c in nb.cells[:setup])
    chapter = jupytext.read(path)
    rest = nb.cells[:setup - 1] + nb.cells[setup + 1:]
    assert [(c.cell_type, c.source, c.metadata) for c in rest] == [
        (c.cell_type, c.source, c.metadata) for c in chapter.cells]
    assert all(c.outputs == [] and c.execution_count is None
               for c in nb.cells if c.cell_type == "code")
    assert nb.metadata.kernelspec == chapter.metadata["kernelspec"]
    assert 'if "google.colab" in sys.modules:' in nb.cells[setup].source
