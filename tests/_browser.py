"""Headless Debian Chromium through Playwright, for the app and site checks.

The browser, its flags and the launch live in :mod:`app.browser_driver`
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

from app.browser_driver import CHROMIUM, launch_browser


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

        self.root = root
        self.out = site_build_dir(root)
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
        self.out.mkdir(parents=True, exist_ok=True)      # a fresh clone has no _build yet
        self.log_path, self.status = self.out / LOG, self.out / STATUS
        for old in (self.log_path, self.status):
            old.unlink(missing_ok=True)
        self.log = open(self.log_path, "w")
        # The cache is emptied if the library, the models or the widget changed since it
        # was filled (tools/book_cache.py, as `make book` does). The chapters are then
        # executed, two at a time, into the build's cache
        # (tools/execute_chapters.py, keyed as myst-nb keys them); the build then reads
        # them from it. A chapter that fails there is executed again by the build,
        # which reports the error as usual. The exit status goes to a file, where the
        # test processes of a parallel run (pytest -n) read it.
        script = ('"$0" -m tools.book_cache "$1" && '
                  '"$0" -m tools.execute_chapters --cache "$1" --jobs 2; '
                  '"$2" build . -n -W --keep-going --path-output "$3"; echo $? > "$4"')
        self.proc = subprocess.Popen(
            ["bash", "-c", script, sys.executable, str(own), str(jb), str(self.out),
             str(self.status)],
            cwd=root, stdout=self.log, stderr=subprocess.STDOUT, text=True, env=env,
            start_new_session=True)

    def stop(self):
        if self.proc.poll() is None:        # the whole group: bash, the tool's workers
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=60)
        self.log.close()


def wait_for_file(path: Path, timeout: float, alive=lambda: True) -> str | None:
    """The text of ``path`` once it exists and is not empty (a status another process
    writes), polled every second; None after ``timeout`` seconds, or once ``alive()``
    has turned false and the file is still empty (read once more after that: the
    writer may have written it just before it ended)."""
    import time

    def text():
        return path.read_text().strip() if path.is_file() else ""

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text():
            return text()
        if not alive():
            return text() or None
        time.sleep(1)
    return None


def site_of(out: Path, timeout: float = 3600, proc=None) -> Path:
    """Wait for the build into ``out`` to write its exit status (it may run in another
    process: pytest -n starts it in the controller); fail with its warnings and last
    lines. Returns the built html folder."""
    status = wait_for_file(out / STATUS, timeout,
                           alive=lambda: proc is None or proc.poll() is None)
    assert status is not None, f"the book build did not finish in {timeout:.0f} s, or was stopped"
    output = (out / LOG).read_text()
    # the warnings themselves scroll far above the build's last lines
    lines = output.splitlines()
    problems = [line for line in lines if "WARNING:" in line or "ERROR:" in line]
    tail = "\n".join(problems[:40] + ["..."] + lines[-20:])
    # -W turns every warning into a failure, so the exit status is the verdict.
    assert status == "0", f"jupyter-book build failed:\n{tail}"
    assert "build finished with problems" not in output, tail
    return out / "_build" / "html"


_builds: dict[Path, BookBuild] = {}
# Set by the controller of a parallel run (pytest -n) for its test processes: the
# controller starts the book build (or decides not to) and writes DECIDED; they only
# wait for it.
BUILD_OWNER = "MNIST_CNN_TEST_BUILD_BY_CONTROLLER"
NOT_STARTED = "not started"
# The files of the session's build, in site_build_dir(root): the controller's decision, the
# build's output and its exit status.
DECIDED, LOG, STATUS = "build.decided", "build.log", "build.status"


def site_build_dir(root: Path) -> Path:
    """Where the test session builds the book of ``root``."""
    return root / "_build" / "test-site"


def start_book_build(root: Path) -> BookBuild:
    """Start the book build for ``root`` (once per session)."""
    if root not in _builds:
        _builds[root] = BookBuild(root)
    return _builds[root]


def build_book(root: Path) -> Path:
    """The built site of ``root`` (in _build/test-site): waits for the session's
    build, starting it first if none has started."""
    out = site_build_dir(root)
    if os.environ.get(BUILD_OWNER) and root not in _builds:
        decided = wait_for_file(out / DECIDED, 600)       # written by the controller
        if decided is not None and decided != NOT_STARTED:
            return site_of(out)
    return site_of(out, proc=start_book_build(root).proc)


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
