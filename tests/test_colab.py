"""The Colab notebooks (book/<chapter>.ipynb) run: their setup cell does nothing
outside Colab, and on a simulated Colab every chapter starts from a fresh clone
(its setup cell installs the course, the chapter's own first cell imports it and
loads the data and models; the book build executes the rest of every chapter).

The simulation is as close to Colab as this machine gets without Google: a kernel
where ``google.colab`` is imported, started in an empty folder (Colab's /content),
in a Python environment that has the dependencies but not the course library;
the setup cell clones a git repository made from this working tree (instead of
GitHub) and pip-installs it, then every chapter runs after it. Not simulated:
Colab's own Python and preinstalled package versions, and the restart it takes
when the install upgrades a package Colab had already imported.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests._helpers_env import venv_with_our_dependencies
from tools import colab_notebooks

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = colab_notebooks.chapters()
SIMULATED_KERNEL = "colab-simulated"
FAKE_COLAB = 'import sys, types\nsys.modules["google.colab"] = types.ModuleType("google.colab")'
# What the kernel reports after a notebook ran (one JSON line).
REPORT = ('import json, os, sys\nimport mnist_cnn\nfrom mnist_cnn import paths\n'
          'print(json.dumps({"cwd": os.getcwd(), "library": mnist_cnn.__file__,\n'
          '                  "models": str(paths.models_dir()),\n'
          '                  "MNIST_CNN_MODELS": os.environ.get("MNIST_CNN_MODELS")}))')


def _run(nb, cwd: Path, kernel_name: str = "python3", timeout: int = 900):
    NotebookClient(nb, kernel_name=kernel_name, timeout=timeout,
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-c", f"safe.directory={cwd}", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout


def test_setup_cell_does_nothing_outside_colab(tmp_path):
    """As committed (GitHub URL, /content checkout), in an ordinary kernel: no output,
    no clone, same folder, no environment change - Binder and local runs are untouched."""
    source = nbformat.read(colab_notebooks.notebook_path(CHAPTERS[0]), as_version=4)
    setup = next(c for c in source.cells if c.get("id") == "colab-setup")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(setup.source),
        nbformat.v4.new_code_cell('import json, os, sys\nprint(json.dumps({"cwd": os.getcwd(), '
                                  '"env": os.environ.get("MNIST_CNN_MODELS"), '
                                  '"colab": "google.colab" in sys.modules}))')])
    _run(nb, tmp_path, timeout=120)
    assert nb.cells[0].outputs == []
    assert json.loads(_text(nb.cells[1])) == {"cwd": str(tmp_path), "env": None, "colab": False}
    assert list(tmp_path.iterdir()) == []
    assert not Path(colab_notebooks.COLAB_CHECKOUT).exists()


@pytest.fixture(scope="module")
def colab(tmp_path_factory, request):
    """A simulated Colab: (content folder, checkout path, repository URL), with the
    setup cell already run once (it cloned and installed)."""
    tmp = tmp_path_factory.mktemp("colab")
    # The "GitHub repository": this working tree (tracked and untracked, not ignored).
    origin = tmp / "origin"
    files = _git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    for rel in filter(None, files.split("\0")):
        if (ROOT / rel).is_file():
            (origin / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, origin / rel)
    _, branch = colab_notebooks.repository()
    _git("init", "-q", "-b", branch, cwd=origin)
    _git("add", "-A", cwd=origin)
    _git("-c", "user.name=test", "-c", "user.email=test@example.com",
         "commit", "-q", "-m", "snapshot", cwd=origin)
    # Colab's Python: the dependencies are there (ours, through a .pth file), the
    # course library is not (the .pth of our editable install is not processed there).
    python = venv_with_our_dependencies(tmp / "venv")
    kernels = tmp / "jupyter" / "kernels" / SIMULATED_KERNEL
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (simulated Colab)", "language": "python"}))
    mp = pytest.MonkeyPatch()
    request.addfinalizer(mp.undo)
    mp.setenv("JUPYTER_PATH", str(tmp / "jupyter"))
    for name in ("MNIST_CNN_MODELS", "MNIST_CNN_MODEL", "MPLBACKEND"):
        mp.delenv(name, raising=False)
    content = tmp / "content"
    content.mkdir()
    checkout = content / "cnn-from-scratch"
    url = f"file://{origin}"

    first = _notebook(CHAPTERS[0], url, checkout)
    first.cells = first.cells[:first.cells.index(_setup(first)) + 1]
    _run(first, content, SIMULATED_KERNEL)
    out = _text(_setup(first))
    assert "Fetching the course repository" in out and "Installing the course library" in out
    assert "restarting" not in out
    assert (checkout / "models" / "cnn_model.keras").is_file()
    return content, checkout, url


def _notebook(chapter: Path, url: str, checkout: Path):
    """The chapter's Colab notebook (as render() writes it, pointing at ``url``),
    run as Colab would: google.colab imported first, a report at the end."""
    nb = nbformat.reads(colab_notebooks.render(chapter, repo_url=url, checkout=str(checkout)),
                        as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(FAKE_COLAB))
    nb.cells.append(nbformat.v4.new_code_cell(REPORT))
    return nb


def _setup(nb):
    return next(c for c in nb.cells if c.get("id") == "colab-setup")


def _setup_only(nb):
    """The notebook up to the chapter's own first code cell (its imports, data and
    models), then the report: what Colab changes (where the library comes from, the
    working folder, the models) shows there, and the book build runs the rest of
    every chapter already, so it is not run a second time here."""
    cells = nb.cells
    start = cells.index(_setup(nb)) + 1
    first = next(i for i in range(start, len(cells)) if cells[i].cell_type == "code")
    nb.cells = cells[:first + 1] + cells[-1:]
    return nb


# Between two chapters in one kernel: the reader's names are gone and the course
# library is imported afresh (its module state included); numpy, matplotlib and
# TensorFlow stay imported, which is all one kernel per chapter would add.
FRESH_CHAPTER = ('get_ipython().run_line_magic("reset", "-f")\nimport sys\n'
                 'for _name in [m for m in sys.modules if m.split(".")[0] == "mnist_cnn"]:\n'
                 '    del sys.modules[_name]')


@pytest.mark.slow
def test_every_chapter_starts_on_simulated_colab(colab):
    """Each chapter's setup cell and first code cell (its imports, data and models), in
    one kernel for all chapters (a kernel per chapter cost two minutes of start-ups)."""
    content, checkout, url = colab
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(FAKE_COLAB))
    where = {}
    for chapter in CHAPTERS:
        own = _setup_only(_notebook(chapter, url, checkout))
        code = [c for c in own.cells[1:] if c.cell_type == "code"]
        for cell in code:              # an error names the chapter it came from
            cell.source = f"# chapter: {chapter.stem}\n{cell.source}"
        nb.cells.append(nbformat.v4.new_code_cell(FRESH_CHAPTER))
        where[chapter.stem] = (len(nb.cells), len(nb.cells) + len(code) - 1)
        nb.cells.extend(code)
    _run(nb, content, SIMULATED_KERNEL)
    assert len(where) == len(CHAPTERS) >= 19
    for name, (setup, report) in where.items():
        # Already cloned and installed: the cell only points the chapter at the checkout.
        assert _text(nb.cells[setup]).strip() == (
            f"Ready: the course library is installed, working in {checkout / 'book'}"), name
        report = json.loads(_text(nb.cells[report]).strip().splitlines()[-1])
        assert report["cwd"] == str(checkout / "book"), name
        # The installed copy, not this checkout's editable one, and the clone's models.
        assert not report["library"].startswith(str(ROOT)), name
        assert report["models"] == report["MNIST_CNN_MODELS"] == str(checkout / "models"), name


@pytest.mark.slow
def test_an_assignment_is_worked_and_graded_on_simulated_colab(colab, tmp_path):
    """A student notebook (here its answer key) runs on Colab from its set-up cell on,
    its checks pass there, and the grader runs there too (otter, no Docker)."""
    from mnist_cnn.assignments import ASSIGNMENTS

    from tools import make_assignments

    content, checkout, url = colab
    a = ASSIGNMENTS["dense_softmax"]
    key = make_assignments.notebook(a, key=True, repo_url=url, checkout=str(checkout))
    zip_path = make_assignments.autograder(a, 3, tmp_path / "dense_softmax.zip")
    nbformat.write(key, tmp_path / "key.ipynb")
    key.cells.insert(0, nbformat.v4.new_code_cell(FAKE_COLAB))
    key.cells.append(nbformat.v4.new_code_cell(
        f"import subprocess, sys\nout = subprocess.run([sys.executable, '-m', 'mnist_cnn', "
        f"'grade', {str(tmp_path / 'key.ipynb')!r}, '--autograder', {str(zip_path)!r}], "
        "capture_output=True, text=True)\nprint(out.stdout[-2000:], out.stderr[-2000:])"))
    key.cells.append(nbformat.v4.new_code_cell(REPORT))
    nb = _run(key, content, SIMULATED_KERNEL)
    printed = "\n".join(_text(c) for c in nb.cells if c.cell_type == "code")
    for part in a.parts:
        assert f"{part.name}: " in printed and "[FAILED]" not in printed
    assert f"dense_softmax, {a.points}/{a.points} points" in _text(nb.cells[-2])
    report = json.loads(_text(nb.cells[-1]))
    assert not report["library"].startswith(str(ROOT))     # Colab's installed copy
