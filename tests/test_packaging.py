"""The installable package: pyproject declares what it imports, the scratch engine
loads without TensorFlow or Streamlit, and a plain ``pip install .`` (no extras,
not editable, into a fresh venv that sees the dependencies, run from another
folder) gives a working command line."""

from __future__ import annotations

import ast
import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from tests._helpers_env import venv_with_our_dependencies

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "code" / "mnist_cnn"


# Modules that only an optional extra's users import, and that extra: the otter plugin
# runs inside otter-grader (`pip install "mnist-cnn[grade]"`), never in a plain install.
EXTRA_ONLY = {PACKAGE / "assignments" / "otter_plugin.py": "grade"}


def _third_party_imports(paths) -> set[str]:
    found = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m != "mnist_cnn"}


def _declared(extra: str | None = None) -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + (project["optional-dependencies"][extra] if extra else [])
    return {re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0].lower().replace("_", "-") for d in deps}


def _undeclared(modules: set[str], declared: set[str]) -> dict:
    distributions = md.packages_distributions()
    return {m: distributions.get(m) for m in modules
            if not {d.lower() for d in distributions.get(m, [m])} & declared}


def test_pyproject_declares_every_third_party_import():
    main = [p for p in PACKAGE.rglob("*.py") if p not in EXTRA_ONLY]
    modules = _third_party_imports(main)
    assert {"numpy", "keras", "PIL"} <= modules          # the scan sees imports
    assert _undeclared(modules, _declared()) == {}
    for path, extra in EXTRA_ONLY.items():
        assert _undeclared(_third_party_imports([path]), _declared(extra)) == {}, path


def test_the_scratch_engine_imports_without_tensorflow_or_streamlit():
    # ... and so do the modules that only read figures or files (evaluate.py says so).
    code = ("import sys, mnist_cnn.scratch, mnist_cnn.scratch.train, mnist_cnn.scratch.fast, "
            "mnist_cnn.metrics, mnist_cnn.evaluate, mnist_cnn.cards, mnist_cnn.predict; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'streamlit') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_a_plain_install_runs_help_predict_and_evaluate(tmp_path):
    """``pip install .`` (not editable) into a fresh venv, then the CLI from an empty folder."""
    # A copy of what the package is made of, so the build leaves nothing in the checkout.
    source = tmp_path / "source"
    shutil.copytree(REPO / "code", source / "code",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    # The dependencies come from our environment (TensorFlow is not downloaded and
    # unpacked again); pip still resolves them against what pyproject declares, and
    # test_pyproject_declares_every_third_party_import checks that list.
    env_dir = tmp_path / "venv"
    py = venv_with_our_dependencies(env_dir)
    install = subprocess.run([str(py), "-m", "pip", "install", "--quiet", str(source)],
                             capture_output=True, text=True, timeout=1800)
    assert install.returncode == 0, install.stderr[-3000:]
    check = subprocess.run([str(py), "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout[-3000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("PYTHONPATH", None)

    def run(*args):
        out = subprocess.run([str(py), "-m", "mnist_cnn", *args], capture_output=True,
                             text=True, timeout=900, cwd=work, env=env)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout

    where = subprocess.run([str(py), "-c", "import mnist_cnn; print(mnist_cnn.__file__)"],
                           capture_output=True, text=True, cwd=work, env=env, check=True)
    assert str(env_dir) in where.stdout                  # the installed copy, not the checkout
    assert "evaluate" in run("--help") and "predict" in run("--help")

    from mnist_cnn.canvas import render_digit
    from PIL import Image

    Image.fromarray(render_digit(3, 60, 50, 160)).save(work / "three.png")
    model = REPO / "models" / "cnn_model.keras"
    assert run("predict", "three.png", "--model", str(model)).startswith("three.png: 3")
    report = run("evaluate", "--model", str(model))
    accuracy = float(re.search(r"Test accuracy: ([\d.]+) %", report).group(1))
    assert accuracy >= 99.0


def test_the_readme_is_a_front_door():
    """What the project is, the screenshots, the two commands, how to run each part
    and where to read more, in at most 130 lines; the figures live in the book."""
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 130
    for must in ("make book", "make test", "book_screenshot.png", "app_screenshot.png",
                 "## Running each part", "## Where to read more"):
        assert must in text
