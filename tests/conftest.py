"""Shared fixtures. Area-specific helpers live in tests/_helpers_<area>.py."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def mnist():
    """Real MNIST as uint8 arrays, loaded once per test session."""
    from mnist_cnn.data import load_mnist

    return load_mnist(progress=False)
