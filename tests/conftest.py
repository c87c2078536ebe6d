"""Shared fixtures. Area-specific helpers live in tests/_helpers_<area>.py."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the book
# A session runs more busy processes than the machine has cores (two test processes, the
# book build's two chapter kernels, servers and browsers), and by default each one's BLAS
# and TensorFlow start a thread per core. Threads that wait for each other then spin on
# the cores the other processes need: a chapter that trains ran several times slower
# than alone, beside one other busy process. One thread each, for every process the
# session starts (they inherit this environment). Numbers do not depend on it: the
# course's tolerances hold for any summation order.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "TF_NUM_INTRAOP_THREADS": "1"}


def _one_thread_per_process():
    for name, value in ONE_THREAD.items():
        os.environ.setdefault(name, value)
    from threadpoolctl import threadpool_limits  # NumPy may already be loaded

    threadpool_limits(limits=int(os.environ["OPENBLAS_NUM_THREADS"]), user_api="blas")


def pytest_configure(config):
    """Every process of the session uses one BLAS / TensorFlow thread. In a parallel
    run (pytest -n), the controller builds the book, once; its test processes (which
    inherit this environment) wait for that build."""
    _one_thread_per_process()
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        from tests._browser import BUILD_OWNER, DECIDED, site_build_dir

        os.environ[BUILD_OWNER] = "1"
        (site_build_dir(ROOT) / DECIDED).unlink(missing_ok=True)


def _start_the_build_if_the_site_is_checked(ids) -> bool:
    """When the site's tests are selected, build the book in the background from the
    start (the longest single task of the suite: it executes every chapter), so it
    runs beside the other tests instead of before the site's."""
    if not any(Path(i.split("::")[0]).name in ("test_site.py", "test_pdf.py") for i in ids):
        return False
    from tests._browser import start_book_build

    start_book_build(ROOT)
    # The build is the longest path through the session: when both want the cores, it
    # goes first (the tests wait for conditions, not for fixed times).
    with contextlib.suppress(OSError):
        os.nice(3)
    return True


def pytest_collection_finish(session):
    from tests._browser import BUILD_OWNER

    if session.config.option.collectonly or os.environ.get("MNIST_CNN_SITE_DIR"):
        return
    if os.environ.get(BUILD_OWNER):                 # a test process of a parallel run
        with contextlib.suppress(OSError):
            os.nice(3)
        return
    _start_the_build_if_the_site_is_checked(item.nodeid for item in session.items)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """The controller of a parallel run: the first test process's collection says
    whether the site is checked; the decision is written for the others to read."""
    from tests._browser import DECIDED, NOT_STARTED, site_build_dir

    decided = site_build_dir(ROOT) / DECIDED
    if decided.is_file() or node.config.option.collectonly \
            or os.environ.get("MNIST_CNN_SITE_DIR"):
        return
    started = _start_the_build_if_the_site_is_checked(ids)
    decided.parent.mkdir(parents=True, exist_ok=True)
    decided.write_text("started" if started else NOT_STARTED)


# Tests that read the session's book build (test_web_page uses it when _build/html is
# missing or stale) run last: the build takes about as long as the rest of the suite, and
# every other test run before them is time the build would otherwise be waited for.
_NEED_THE_BUILD = {"test_site.py", "test_pdf.py", "test_web_page.py"}


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: Path(str(item.fspath)).name in _NEED_THE_BUILD)


def pytest_sessionfinish(session):
    from tests._browser import stop_book_builds

    stop_book_builds()


@pytest.fixture(scope="module")
def site_dir() -> Path:
    """The built book: the session's build (tests/_browser.py), or MNIST_CNN_SITE_DIR."""
    from tests._browser import build_book

    prebuilt = os.environ.get("MNIST_CNN_SITE_DIR")
    return Path(prebuilt) if prebuilt else build_book(ROOT)


@pytest.fixture(scope="session")
def mnist():
    """Real MNIST as uint8 arrays, loaded once per test session."""
    from mnist_cnn.data import load_mnist

    return load_mnist(progress=False)


# --------------------------------------------------------------------------- the app
@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """The committed Keras model, or a small trained one if it is missing."""
    from tests._helpers_app import committed_or_small_model

    return committed_or_small_model(tmp_path_factory.getbasetemp())


@pytest.fixture
def app(model_path, monkeypatch):
    """The Streamlit app under AppTest, serving ``model_path``, after its first run."""
    from streamlit.testing.v1 import AppTest

    from tests._helpers_app import APP, TIMEOUT

    monkeypatch.setenv("MNIST_CNN_MODEL", str(model_path))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    return at


# --------------------------------------------------------------------------- browsers
@pytest.fixture(scope="module")
def browser():
    """A headless Chromium (Playwright), one per test module that asks for it."""
    from playwright.sync_api import sync_playwright

    from tests._browser import launch

    with sync_playwright() as pw:
        b = launch(pw)
        yield b
        b.close()
