"""Headless Debian Chromium through Playwright, for the app and site checks.

The browser, its flags and the launch live in :mod:`benchmarks.browser`
(shared with the benchmarks); this adds what a test does when the browser is
missing: fail in CI (`make test` installs Debian chromium), skip elsewhere.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import signal
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


class BookBuild:
    """`jupyter-book build . -n -W --keep-going` (as `make book` runs it, executing
    every chapter) in a subprocess. The conftest starts it in the background when the
    session will check the site, so the build runs while the other tests run; the
    site's tests wait for it.

    It builds into a folder of its own, _build/test-site, not into _build/html:
    chapters that time things measure them here on a machine busy with tests, and
    `make book` must not publish those figures. Its execution cache stays there for
    the next session (the rest is built afresh, so every warning shows again); the
    first time, a cache from an earlier `make book` is copied in, so chapters that
    have not changed are not executed again."""

    def __init__(self, root: Path):
        import shutil
        import subprocess
        import sys
        import tempfile

        self.root = root
        self.out = root / "_build" / "test-site"
        cache, own = root / "_build" / ".jupyter_cache", self.out / "_build" / ".jupyter_cache"
        if cache.is_dir() and not own.is_dir():
            shutil.copytree(cache, own)
        # Only executed chapters are kept from one session to the next: an incremental
        # Sphinx build would skip unchanged pages and not repeat their warnings.
        for old in (own.parent.iterdir() if own.parent.is_dir() else []):
            if old != own:
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        jb = Path(sys.executable).with_name("jupyter-book")
        # `import streamlit` (the app tests) sets MPLBACKEND=Agg in this process; the
        # chapters' kernels must not inherit it, or plt.show() renders no figure.
        env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
        self.log = tempfile.TemporaryFile(mode="w+")
        # The chapters are executed first, two at a time, into the build's cache
        # (tools/execute_chapters.py, keyed as myst-nb keys them); the build then reads
        # them from it. A chapter that fails there is executed again by the build,
        # which reports the error as usual.
        script = ('"$0" -m tools.execute_chapters --cache "$1" --jobs 2; '
                  'exec "$2" build . -n -W --keep-going --path-output "$3"')
        self.proc = subprocess.Popen(
            ["bash", "-c", script, sys.executable, str(own), str(jb), str(self.out)],
            cwd=root, stdout=self.log, stderr=subprocess.STDOUT, text=True, env=env,
            start_new_session=True)
        self._site: Path | None = None

    def site(self, timeout: float = 3600) -> Path:
        """Wait for the build; fail with its last lines. Returns the built html folder."""
        if self._site is None:
            self.proc.wait(timeout=timeout)
            self.log.seek(0)
            output = self.log.read()
            # the warnings themselves scroll far above the build's last lines
            lines = output.splitlines()
            problems = [line for line in lines if "WARNING:" in line or "ERROR:" in line]
            tail = "\n".join(problems[:40] + ["..."] + lines[-20:])
            # -W turns every warning into a failure, so the exit status is the verdict.
            assert self.proc.returncode == 0, f"jupyter-book build failed:\n{tail}"
            assert "build finished with problems" not in output, tail
            self._site = self.out / "_build" / "html"
        return self._site

    def stop(self):
        if self.proc.poll() is None:        # the whole group: bash, the tool's workers
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=60)
        self.log.close()


_builds: dict[Path, BookBuild] = {}


def start_book_build(root: Path) -> BookBuild:
    """Start the book build for ``root`` (once per session)."""
    if root not in _builds:
        _builds[root] = BookBuild(root)
    return _builds[root]


def build_book(root: Path) -> Path:
    """The built site of ``root`` (in _build/test-site): waits for the session's
    build, starting it first if none has started."""
    return start_book_build(root).site()


def stop_book_builds():
    while _builds:
        _builds.popitem()[1].stop()


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
