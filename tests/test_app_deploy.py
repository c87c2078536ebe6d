"""The deployment files: what Streamlit Community Cloud reads from the repository."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from mnist_cnn.preprocess import MAX_BYTES

REPO = Path(__file__).resolve().parents[1]


def _requirements():
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def test_requirements_install_the_project():
    reqs = _requirements()
    assert "-e ." in reqs  # the package with its pinned dependency ranges


def test_python_version_matches_pyproject():
    runtime = (REPO / "runtime.txt").read_text().strip()
    m = re.fullmatch(r"python-3\.(\d+)", runtime)
    assert m, runtime
    minor = int(m.group(1))
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    lo, hi = (int(v) for v in re.findall(r"3\.(\d+)", requires))
    assert lo <= minor < hi


def test_streamlit_config():
    cfg = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["maxUploadSize"] * 1024 * 1024 == MAX_BYTES
    assert cfg["client"]["showErrorDetails"] == "none"
    assert cfg["browser"]["gatherUsageStats"] is False


def test_app_entry_point_exists():
    assert (REPO / "app" / "streamlit_app.py").is_file()
    assert (REPO / "models" / "cnn_model.keras").is_file(), "the deployed app needs the model"


def test_the_files_the_app_reads_at_start_up_ship_with_it():
    """The page's style and script are read from the app's own folder (app/page_assets.py,
    which the app imports from beside it): the host's checkout must have them."""
    files = [f"app/{name}" for name in ("page_assets.py", "page.css", "page.js")]
    for name in files:
        assert (REPO / name).is_file(), name
    if shutil.which("git") and (REPO / ".git").exists():
        ignored = subprocess.run(["git", "check-ignore", *files], cwd=REPO,
                                 capture_output=True, text=True)
        assert ignored.stdout == "", f"git ignores {ignored.stdout}"


@pytest.mark.slow
def test_requirements_resolve_from_pypi(tmp_path):
    """pip resolves requirements.txt from scratch (as a clean environment would, ignoring
    what is installed) to a set that contains the app's dependencies. A full install
    into a clean venv downloads ~1 GB (TensorFlow), too much for every test run."""
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--report", str(report), "-r", "requirements.txt"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 and re.search(r"NewConnectionError|Network is unreachable|"
                                          r"Temporary failure in name resolution", proc.stderr):
        pytest.skip("PyPI is unreachable")
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = {i["metadata"]["name"].lower() for i in json.loads(report.read_text())["install"]}
    for needed in ("mnist-cnn", "tensorflow", "keras", "streamlit",
                   "streamlit-drawable-canvas", "pillow", "numpy", "pyyaml"):
        assert needed in names, needed
