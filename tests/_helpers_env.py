"""A fresh Python environment that has the project's dependencies but not the
course library: a venv whose site-packages points at ours through a .pth file
(the .pth files of our own site-packages, among them the editable install of
mnist_cnn, are not processed there). Installing the course into it builds and
installs the package as a user would, without downloading TensorFlow again."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path


def venv_with_our_dependencies(path: Path) -> Path:
    """Create a venv at ``path``; return its python."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    python = path / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig."
                              "get_paths()['purelib'])"], check=True, capture_output=True,
                             text=True).stdout.strip()
    Path(purelib, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python
