"""Every chapter opens as a notebook (jupytext) and follows the course's shape,
and its Colab notebook (book/<chapter>.ipynb) is the chapter as it is now.

Execution is covered by the real Jupyter Book build in tests/test_site.py
(`jupyter-book build . -n -W --keep-going` executes every chapter and fails on
any error) and, for the Colab notebooks, by tests/test_colab.py; here we check
what a reader opening a chapter in JupyterLab or Colab gets.
"""

from __future__ import annotations

import re
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
    assert "{exercise}" in text and "{solution-start}" in text
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


# ---------------------------------------------------------------- solutions and figures
def _prose(text: str) -> str:
    """A chapter's Markdown with code, math, inline code, roles and HTML removed."""
    text = re.sub(r"^(`{3,})[^\n]*\n.*?^\1$", "", text, flags=re.M | re.S)   # fenced blocks
    text = re.sub(r"\$\$.*?\$\$|\$[^$\n]*\$", "", text, flags=re.S)       # math
    text = re.sub(r"\{[\w:-]+\}`[^`]*`|`[^`]*`", "", text)                # roles, inline code
    return re.sub(r"<[^>]+>", "", text)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_solution_runs_in_the_build(path):
    """Solutions use the gated syntax, so their code is executed code cells (the build
    fails when one raises, and the figures they state are asserted in them); a
    ```python block inside a solution would be shown without ever running."""
    text = path.read_text()
    assert "````{solution}" not in text
    starts = re.findall(r"^```\{solution-start\} (\S+)", text, flags=re.M)
    assert starts and len(starts) == text.count("```{solution-end}")
    for block in re.findall(r"^```\{solution-start\}.*?^```\{solution-end\}", text,
                            flags=re.M | re.S):
        assert "```python" not in block


# A percentage, a time or a size stated in a chapter's prose is measured in the build
# and glued ({glue:text}), unless it is one of these, each with the reason it is not
# a measurement of this build. Shapes such as 28×28 or 3×3 are not matched at all.
NOT_MEASURED = {
    ("training", "72 %"): "the figure the earlier project reported (a citation)",
    ("backprop", "99.2 %"): "the target set for the NumPy model (test_cards checks it)",
    ("training", "9 %"): "asserted by the solution's cell (0.05 < accuracy < 0.15)",
    ("deployment", "2 %"): "the width of preprocess' border frame, a constant",
    ("deployment", "30 %"): "canvas simulation: the smallest digit height, a constant",
    ("deployment", "90 %"): "canvas simulation: the largest digit height, a constant",
    ("deployment", "10 MB"): "the upload limit, a constant",
    ("deployment", "1 MB"): "a bound on the model file, asserted by test_keras_model",
    ("deployment", "99.5 %"): "the widget's agreement threshold, asserted by its tests",
    ("deployment", "10 %"): "the zoom of the augmentation, a recipe constant",
    ("deployment", "3.2 GB"): "20,000 x 20,000 x 8 bytes, printed by the cell beside it",
    ("deployment", "50 ms"): "how often the browser test samples the page, a test setting",
    ("fast", "4 KiB"): "the size of a memory page",
    ("keras", "10 %"): "the zoom of the augmentation, a recipe constant",
    ("mnist_data", "82.0 %"): "asserted by the solution's cell",
    ("index", "99 %"): "both committed models score at least 99.2 % (test_cards asserts it)",
}
FIGURE = re.compile(r"(?<![\w.,])\d[\d,]*(?:\.\d+)?(?:\s?%|\s?(?:ms|[KMG]i?B)\b|"
                    r"\s(?:s|seconds?|min|minutes?)\b)")


def test_the_figure_rule_finds_figures_and_skips_shapes():
    found = FIGURE.findall(_prose("It took 1.5 s and 12 ms, 99.61 % of 10 MB; a 28×28 "
                                  "image in the 1990s, `3 s` in code, {glue:text}`acc:.1%`."))
    assert found == ["1.5 s", "12 ms", "99.61 %", "10 MB"]


@pytest.mark.parametrize("path", [*CHAPTERS, ROOT / "book" / "index.md"], ids=lambda p: p.stem)
def test_measured_figures_in_the_prose_are_glued(path):
    figures = {f.replace("\u00a0", " ") for f in FIGURE.findall(_prose(path.read_text()))}
    unexplained = sorted(f for f in figures if (path.stem, f) not in NOT_MEASURED)
    assert unexplained == [], f"{path.name}: glue these figures or assert them beside the prose"
