"""Shared fixtures. Area-specific helpers live in tests/_helpers_<area>.py."""

from __future__ import annotations

import pytest


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
