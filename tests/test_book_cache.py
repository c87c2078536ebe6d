"""The book's execution cache is emptied when what the chapters read changes
(tools/book_cache.py), and kept when only derived or unrelated files do."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools import book_cache

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tree(tmp_path):
    """A checkout in miniature: the inputs, a chapter, the export and a filled cache."""
    files = {"code/mnist_cnn/layers.py": "W = 1\n", "models/cnn_model.json": "{}\n",
             "models/experiments/seeds.json": "[]\n", "pyproject.toml": "[project]\n",
             "book/_static/digit_widget/widget.js": "// the page\n",
             "book/_static/digit_widget/weights.js": "exported\n",
             "book/_static/digit_widget/manifest.json": "{}\n",
             "app/streamlit_app.py": "st.title('x')\n", "requirements.txt": "numpy\n",
             "book/training.md": "# a chapter\n"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    cache = tmp_path / "_build" / ".jupyter_cache"
    book_cache.check(cache, tmp_path)
    (cache / "executed").mkdir()
    (cache / "executed" / "chapter.ipynb").write_text("outputs")
    return tmp_path, cache


def _filled(cache: Path) -> bool:
    return (cache / "executed" / "chapter.ipynb").is_file()


@pytest.mark.parametrize("changed", [
    "code/mnist_cnn/layers.py", "models/cnn_model.json", "models/experiments/seeds.json",
    "pyproject.toml", "book/_static/digit_widget/widget.js", "code/mnist_cnn/new.py",
    "book/_static/digit_widget/manifest.json", "app/streamlit_app.py", "requirements.txt",
    "models/sub/manifest.json", "models/sub/weights.js"])
def test_a_changed_input_empties_the_cache(tree, changed):
    root, cache = tree
    assert not book_cache.check(cache, root) and _filled(cache)     # nothing changed yet
    (root / changed).parent.mkdir(parents=True, exist_ok=True)
    (root / changed).write_text("changed\n")
    assert book_cache.check(cache, root)
    assert not _filled(cache) and (cache / book_cache.STAMP).is_file()
    assert not book_cache.check(cache, root)                   # and now it is current


@pytest.mark.parametrize("changed", [
    "book/_static/digit_widget/weights.js",       # exported from the model and the library
    "book/training.md",                            # jupyter-cache keys the chapter's code
    "code/mnist_cnn/__pycache__/layers.cpython-311.pyc"])
def test_a_derived_or_unrelated_file_keeps_it(tree, changed):
    root, cache = tree
    (root / changed).parent.mkdir(parents=True, exist_ok=True)
    (root / changed).write_text("changed\n")
    assert not book_cache.check(cache, root) and _filled(cache)


def test_the_models_the_environment_points_at_count(tree, tmp_path_factory, monkeypatch):
    root, cache = tree
    other = tmp_path_factory.mktemp("elsewhere") / "other.keras"
    other.write_text("a model\n")
    monkeypatch.setenv("MNIST_CNN_MODEL", str(other))
    assert book_cache.check(cache, root)                # another model: all run again
    (cache / "executed").mkdir()
    (cache / "executed" / "chapter.ipynb").write_text("outputs")
    assert not book_cache.check(cache, root) and _filled(cache)
    other.write_text("retrained\n")
    assert book_cache.check(cache, root)


def test_a_cache_without_its_stamp_is_emptied(tree):
    """A cache filled before the stamp existed (or by hand) cannot be trusted."""
    root, cache = tree
    (cache / book_cache.STAMP).unlink()
    assert book_cache.check(cache, root) and not _filled(cache)


def test_the_builds_check_the_cache_first():
    make = (REPO / "Makefile").read_text()
    for target in ("book:", "pdf:"):
        recipe = make.split(f"\n{target}", 1)[1].split("\n\n", 1)[0]
        assert recipe.splitlines()[1].strip() == \
            "$(PY) -m tools.book_cache _build/.jupyter_cache", target
    assert "-m tools.book_cache" in (REPO / "tests" / "_browser.py").read_text()


def test_the_inputs_are_this_checkout_s(monkeypatch):
    for name in book_cache.MODEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    names = {p.relative_to(REPO).as_posix() for p in book_cache.input_files()}
    assert {"code/mnist_cnn/scratch/layers.py", "models/cnn_model.keras", "pyproject.toml",
            "book/_static/digit_widget/widget.js"} <= names
    assert "app/streamlit_app.py" in names
    assert not any(n.endswith(("weights.js", ".pyc")) or n.startswith("book/") and
                   n.endswith(".md") for n in names)
