"""Headless Debian Chromium through Playwright, for the app and site checks.

The browser, its flags and the launch live in :mod:`benchmarks.browser`
(shared with the benchmarks); this adds what a test does when the browser is
missing: fail in CI (`make test` installs Debian chromium), skip elsewhere.
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from benchmarks.browser import CHROMIUM, launch_browser


def require_chromium() -> str:
    if not Path(CHROMIUM).is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; `make test` installs Debian chromium")
        pytest.skip(f"{CHROMIUM} is missing (run `make chromium`)")
    return CHROMIUM


def launch(playwright):
    """A headless Chromium browser."""
    require_chromium()
    return launch_browser(playwright)


def build_book(root: Path) -> Path:
    """Build the book as `make book` does (`jupyter-book build . -n -W --keep-going`,
    executing every chapter); fail with the build's last lines. Returns _build/html."""
    import subprocess
    import sys

    jb = Path(sys.executable).with_name("jupyter-book")
    # `import streamlit` (the app tests) sets MPLBACKEND=Agg in this process; the
    # chapters' kernels must not inherit it, or plt.show() renders no figure (and
    # jupyter-cache would keep those figure-less outputs for `make book`).
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    proc = subprocess.run([str(jb), "build", ".", "-n", "-W", "--keep-going"], cwd=root,
                          capture_output=True, text=True, timeout=3600, env=env)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
    # -W turns every warning into a failure, so the exit status is the verdict.
    assert proc.returncode == 0, f"jupyter-book build failed:\n{tail}"
    assert "build finished with problems" not in proc.stdout, tail
    return root / "_build" / "html"


@contextmanager
def serve(directory: Path):
    """Serve ``directory`` over HTTP on loopback; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
