"""Every chapter opens as a notebook (jupytext) and follows the course's shape,
and its Colab notebook (book/<chapter>.ipynb) is the chapter as it is now.

Execution is covered by the real Jupyter Book build in tests/test_site.py
(`jupyter-book build . -n -W --keep-going` executes every chapter and fails on
any error) and, for the Colab notebooks, by tests/test_colab.py; here we check
what a reader opening a chapter in JupyterLab or Colab gets.
"""

from __future__ import annotations

import ast
import re
import sys
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
    "training": {"72 %": "the figure the earlier project reported (a citation)",
                 "9 %": "asserted by the solution's cell (0.05 < accuracy < 0.15)"},
    "deployment": {"2 %": "the width of preprocess' border frame, a constant",
                   "30 %": "canvas simulation: the smallest digit height, a constant",
                   "90 %": "canvas simulation: the largest digit height, a constant",
                   "99.5 %": "the widget's agreement threshold, asserted by its tests"},
    "app": {"10 MB": "the upload limit, a constant",
            "1 MB": "a bound on the model file, asserted by test_keras_model",
            "3.2 GB": "20,000 x 20,000 x 8 bytes, printed by the cell beside it",
            "50 ms": "how often the browser test samples the page, a test setting"},
    "fast": {"4 KiB": "the size of a memory page"},
    "keras": {"10 %": "the zoom of the augmentation, a recipe constant"},
    "index": {"99 %": "both committed models score at least 99.2 % (test_cards asserts it)"},
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
    unexplained = sorted(f for f in figures if f not in NOT_MEASURED.get(path.stem, {}))
    assert unexplained == [], f"{path.name}: glue these figures or assert them beside the prose"


# ---------------------------------------------------------------- what a notebook copy shows
# A MyST directive is Sphinx markup: Jupyter and Colab know none of them and show a
# fenced ```{name} block as a code block with the directive's raw text. That is
# acceptable only where the body *is* the content and reads as text. These are the
# directives the chapters may use in Markdown, each with why it reads right anyway:
DIRECTIVES_READ_AS_TEXT = {
    "admonition": "a box of prose (learning goals, try-it notes); its text is the content",
    "note": "a box of prose, as admonition",
    "tip": "a box of prose, as admonition",
    "important": "a box of prose, as admonition",
    "warning": "a box of prose, as admonition",
    "exercise": "an exercise's statement is prose; Jupyter shows it as a block of text",
    "solution-start": "marks where a solution's executed cells begin; its only body is the "
                      "`:class: dropdown` option, and the solution itself is ordinary cells",
    "solution-end": "closes a solution; no body",
}
# Everything else fails, among them: literalinclude and include (the reader would see
# a file name instead of the code: show code with `source(...)` in a code cell), figure
# (a path instead of the picture: display it from a code cell), raw (HTML source
# instead of what it draws: use a plain HTML block), code-cell (a cell jupytext did not
# recognise, e.g. one indented in a list item: its code would never run), glue:figure.
DIRECTIVE = re.compile(r"^[ \t]*(?:`{3,}|~{3,}|:{3,})[ \t]*\{([^}\s]+)\}", re.M)


def test_the_directive_rule_finds_fenced_directives():
    text = ("```{literalinclude} ../x.py\n```\n  ```{code-cell} ipython3\n  x\n  ```\n"
            ":::{admonition} Goals\n:::\n````{figure} a.png\n````\n```python\n```\n")
    assert DIRECTIVE.findall(text) == ["literalinclude", "code-cell", "admonition", "figure"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_directive_shows_as_raw_text_in_the_notebook_copy(path):
    nb = nbformat.read(colab_notebooks.notebook_path(path), as_version=4)
    found = sorted({(name, cell.source.split("\n", 1)[0][:60])
                    for cell in nb.cells if cell.cell_type == "markdown"
                    for name in DIRECTIVE.findall(cell.source)
                    if name not in DIRECTIVES_READ_AS_TEXT})
    assert found == [], (f"{path.name}: these directives show as raw text in Jupyter and "
                         "Colab (see DIRECTIVES_READ_AS_TEXT)")


# ---------------------------------------------------------------- code shown with source()
BOOK = ROOT / "book"
SHOWN_MAX_LINES = 30
# Displays allowed to be longer, keyed (chapter, the call as ast.unparse writes it),
# each with its reason. A key that no longer matches a longer display fails too.
LONGER_DISPLAYS = {
    ("inside", "source(grad_cam)"):
        "the section's one algorithm; its docstring states the formula the paragraph "
        "above it derives, and the inputs and output the check below uses",
    ("convolution", "source(conv2d_naive)"):
        "the literal loops of the chapter's one idea; more than half of it is the "
        "docstring that lists the inputs and the output shape",
    ("keras", "source(km.build_model)"):
        "the whole production architecture in one function, with every argument "
        "documented; the chapter reads its layers off it",
    ("keras", "source(km.train)"):
        "the whole training recipe (augmentation, validation split, schedule, early "
        "stopping, best-epoch restore) that the paragraph above it walks through",
    ("deployment", "source('_static/digit_widget/forward.js', 'conv2d')"):
        "conv2d_naive of the convolution chapter in JavaScript: six nested loops with the "
        "zero-padding checks, under three lines of comment",
}


def _code_cells(path: Path):
    return [c for c in jupytext.read(path).cells if c.cell_type == "code"]


def _source_calls(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name) and node.func.id == "source"]


def _displays():
    """(chapter, call) for every ``source(...)`` in a chapter's code cells."""
    return [(path.stem, ast.unparse(call)) for path in CHAPTERS
            for cell in _code_cells(path) for call in _source_calls(ast.parse(cell.source))]


DISPLAYS = _displays()


def _shown_code(chapter: str, call: str, monkeypatch) -> str:
    """The code ``call`` displays, as the chapter runs it: in book/, with the
    chapter's own mnist_cnn imports."""
    from mnist_cnn.notebook import source

    namespace: dict = {}
    for cell in _code_cells(BOOK / f"{chapter}.md"):
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mnist_cnn") \
                    or isinstance(node, ast.Import) \
                    and all(a.name.startswith("mnist_cnn") for a in node.names):
                exec(ast.unparse(node), namespace)          # noqa: S102 - our own chapters
    node = ast.parse(call, mode="eval").body
    args = [eval(ast.unparse(a), namespace) for a in node.args]          # noqa: S307
    kwargs = {k.arg: eval(ast.unparse(k.value), namespace) for k in node.keywords}  # noqa: S307
    monkeypatch.chdir(BOOK)
    code, _ = source(*args, **kwargs, as_text=True)
    return code


def test_chapters_show_code_through_source():
    """Code is shown by running `source(...)` (so notebooks show it too), never by a
    literalinclude or a hand-made display, and every kind of display is in use."""
    assert len(DISPLAYS) >= 35
    calls = {call for _, call in DISPLAYS}
    assert {"source(conv2d_naive)", "source(km.build_model)",
            "source('../app/streamlit_app.py', 'workspace_ui')",
            "source('../requirements.txt')", "source('../.streamlit/config.toml')",
            "source('_static/digit_widget/forward.js', 'conv2d')"} <= calls
    for path in CHAPTERS:
        assert "{literalinclude}" not in path.read_text(), path.name
        assert not any(re.search(r"\bgetsource\b|\bCode\(", c.source)
                       for c in _code_cells(path)), path.name


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_a_source_cell_shows_only_its_output(path):
    """A cell that shows code does nothing else, and the page shows the code, not the
    one-line call that produced it (in a notebook the call stays visible: run it)."""
    for cell in _code_cells(path):
        tree = ast.parse(cell.source)
        if not _source_calls(tree):
            continue
        assert all(isinstance(s, ast.Expr) and s.value in _source_calls(tree)
                   for s in tree.body), f"{path.name}: {cell.source!r} does more than show"
        assert "remove-input" in cell.metadata.get("tags", []), \
            f"{path.name}: tag {cell.source!r} with remove-input"


@pytest.mark.parametrize(("chapter", "call"), DISPLAYS, ids=[f"{c}:{s}" for c, s in DISPLAYS])
def test_a_shown_piece_of_code_is_short(chapter, call, monkeypatch):
    lines = len(_shown_code(chapter, call, monkeypatch).splitlines())
    if (chapter, call) in LONGER_DISPLAYS:
        assert lines > SHOWN_MAX_LINES, f"{chapter}: {call} is {lines} lines: drop its exception"
    else:
        assert lines <= SHOWN_MAX_LINES, f"{chapter} shows {call}: {lines} lines"


def test_every_longer_display_is_still_shown():
    assert set(LONGER_DISPLAYS) <= set(DISPLAYS)


def test_chapters_and_colab_run_in_book():
    """Chapters name files relative to book/: the build runs them there, and so does
    the Colab setup cell."""
    assert 'os.chdir(os.path.join(CHECKOUT, "book"))' in colab_notebooks.SETUP_CODE.template


# ---------------------------------------------------------------- source() itself
def test_source_shows_a_definition_from_a_file_without_importing_it(monkeypatch):
    from mnist_cnn import bridge
    from mnist_cnn.notebook import source
    from mnist_cnn.scratch import functional as F

    monkeypatch.chdir(BOOK)
    before = set(sys.modules)        # (other tests may have run the app already)
    code, language = source("../app/streamlit_app.py", "workspace_ui", as_text=True)
    lines = code.splitlines()
    assert language == "python"
    assert lines[0] == "@st.fragment" and lines[1].startswith("def workspace_ui(")
    assert not any(line.startswith(("def ", "@", "class ")) for line in lines[2:])
    imported = [sys.modules[name] for name in set(sys.modules) - before]
    assert not any(getattr(m, "__file__", None) and m.__file__.endswith("streamlit_app.py")
                   for m in imported)
    # The same text inspect finds for an imported object: functions and methods.
    assert source("../code/mnist_cnn/scratch/functional.py", "conv2d", as_text=True) == \
        source(F.conv2d, as_text=True)
    assert source("../code/mnist_cnn/bridge.py", "_Pending.fold_batchnorm", as_text=True) == \
        source(bridge._Pending.fold_batchnorm, as_text=True)
    with pytest.raises(LookupError):
        source("../app/streamlit_app.py", "no_such_function", as_text=True)
    with pytest.raises(FileNotFoundError, match="book/"):
        source("app/streamlit_app.py", as_text=True)


def test_source_shows_whole_files_and_javascript_functions(monkeypatch):
    from mnist_cnn.notebook import source

    monkeypatch.chdir(BOOK)
    assert source("../requirements.txt", as_text=True) == (
        (ROOT / "requirements.txt").read_text(), "text")
    assert source("../.streamlit/config.toml", as_text=True)[1] == "toml"
    assert source("../.streamlit/config.toml", language="ini", as_text=True)[1] == "ini"
    code, language = source("_static/digit_widget/forward.js", "forward", as_text=True)
    assert language == "javascript"
    assert code.startswith("// ") and "function forward(net, image) {" in code
    assert code.rstrip().endswith("}") and "MnistCnn.forward" not in code
    with pytest.raises(ValueError):
        source("../requirements.txt", "numpy", as_text=True)

    shown = []
    monkeypatch.setattr("IPython.display.display", shown.append)
    assert source("../.streamlit/config.toml") is None
    assert shown[0].data.startswith("```toml\n# Streamlit settings")
    assert shown[0].data.endswith("\n```")


# ---------------------------------------------------------------- code that fits the column
# The content column holds this many characters of code at 1280 px, also inside an
# exercise's solution (book/_static/course.css; tests/test_site.py measures it in
# Chromium). A longer line scrolls sideways and hides its end from the reader.
CODE_COLUMNS = 88


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_code_lines_fit_the_column(path):
    long = [f"{len(line)} chars: {line.strip()[:60]}" for cell in _code_cells(path)
            for line in cell.source.splitlines() if len(line) > CODE_COLUMNS]
    assert long == [], f"{len(long)} code lines longer than {CODE_COLUMNS} characters"


def _unused_imports(code: str) -> list[str]:
    """Names a piece of code imports and never uses (magics and shell lines skipped)."""
    tree = ast.parse("\n".join(line for line in code.splitlines()
                               if not line.lstrip().startswith(("%", "!"))))
    imported = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) \
                and getattr(node, "module", None) != "__future__":
            for alias in node.names:
                imported[alias.asname or alias.name.split(".")[0]] = node.lineno
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    return sorted(set(imported) - used)


def test_the_unused_import_rule_finds_them():
    code = "import json, time\nfrom x import (a, b as c)\n%matplotlib inline\nprint(json, c)"
    assert _unused_imports(code) == ["a", "time"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_a_chapter_imports_only_what_it_uses(path):
    unused = _unused_imports("\n".join(cell.source for cell in _code_cells(path)))
    assert unused == [], f"{path.name} imports and never uses: {', '.join(unused)}"


CANVAS_SIZE = re.compile(r"\b(\d+) ?(?:×|x|by) ?(\d+)(?: RGBA)? canvas")


def test_the_canvas_rule_finds_canvas_sizes():
    text = "a 280×280 canvas, a 280x280 RGBA canvas, Four 280 by 280 canvases, 28×28 image"
    assert CANVAS_SIZE.findall(text) == [("280", "280"), ("280", "280"), ("280", "280")]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_a_canvas_size_a_page_names_is_the_library_s(path):
    """Pages say "280×280 canvas" in prose, captions and labels: the size of
    mnist_cnn.canvas.CANVAS, so a change there cannot leave a page saying another."""
    from mnist_cnn.canvas import CANVAS

    sizes = set(CANVAS_SIZE.findall(path.read_text()))
    assert sizes <= {(str(CANVAS), str(CANVAS))}, sizes
