"""Faults: the model file changing under a running app, Ctrl-C during training,
a corrupted dataset cache, a read-only cache, and unsafe model files.

What tests/test_data.py, test_keras_model.py and test_scratch_network.py
already check (one flipped label bit replaced from a good source, a cache dir
that cannot be created, Keras' Lambda refusal, a pickled .npz) is not repeated
here; these tests add the end-to-end paths around them: the app and the CLI
in front of those files, the other corruption kinds, training interrupted by a
real SIGINT, and a truly read-only cache (as an unprivileged user, since root
ignores directory permissions).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mnist_cnn import data
from mnist_cnn.numerics import assert_close
from mnist_cnn.preprocess import to_mnist
from streamlit.testing.v1 import AppTest

from benchmarks.faults import (
    DROP_CAPS,
    folder_hashes,
    interrupt_training,
    place_previous_model,
)
from tests._helpers_app import APP, TIMEOUT, committed_or_small_model, render_digit
from tests.test_app_streamlit import _draw, _texts

# --------------------------------------------------------------------------- (a) the app


@pytest.fixture(scope="module")
def good_model(tmp_path_factory):
    return committed_or_small_model(tmp_path_factory.getbasetemp())


def _predicts(at, digit=7):
    at = _draw(at, render_digit(digit, 50, 40, 170, width=16))
    assert not at.exception
    return at


def _touch_later(path: Path, previous_mtime_ns: int) -> None:
    """Make sure a rewritten file's mtime differs (coarse file-system clocks)."""
    st = path.stat()
    if st.st_mtime_ns == previous_mtime_ns:
        os.utime(path, ns=(st.st_atime_ns, previous_mtime_ns + 1_000_000))


def test_model_replaced_corrupted_deleted_and_restored_while_the_app_runs(
        good_model, tmp_path, monkeypatch):
    served = tmp_path / "served.keras"
    shutil.copyfile(good_model, served)
    monkeypatch.setenv("MNIST_CNN_MODEL", str(served))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at = _predicts(at)
    assert not at.error and at.metric[0].value == "7"

    # 1. Corrupted in place (a half-written copy, as a failed deploy leaves it).
    old = served.stat().st_mtime_ns
    served.write_bytes(Path(good_model).read_bytes()[:5000])
    _touch_later(served, old)
    at = at.run()
    assert not at.exception
    msg = _texts(at.error)
    assert "Could not" in msg and str(served) in msg and "train-keras" in msg, msg
    assert len(at.metric) == 0  # no prediction from a model we could not load

    # 2. Deleted.
    served.unlink()
    at = at.run()
    assert not at.exception
    msg = _texts(at.error)
    assert "No model file" in msg and str(served) in msg and "train-keras" in msg, msg

    # 3. A good file returns: served again without a restart, in the same session.
    shutil.copyfile(good_model, served)
    _touch_later(served, old)
    at = at.run()
    assert not at.exception and not at.error, _texts(at.error)
    at = _predicts(at, 3)
    assert not at.error and at.metric[0].value == "3"


def test_a_new_model_file_is_picked_up_without_restart(good_model, tmp_path, monkeypatch):
    """Replacing the model with a different one (a redeploy) changes what the app serves."""
    from tests._helpers_app import small_model

    served = tmp_path / "served.keras"
    shutil.copyfile(good_model, served)
    monkeypatch.setenv("MNIST_CNN_MODEL", str(served))
    at = _predicts(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    first = np.array(at.session_state["probabilities"])

    # An untrained model: its probabilities for the same drawing are clearly different.
    other = small_model(seed=1)
    tmp = tmp_path / "other.keras"
    other.save(tmp)
    old = served.stat().st_mtime_ns
    os.replace(tmp, served)  # atomic swap, as a deploy should do it
    _touch_later(served, old)
    at = _predicts(at.run())
    assert not at.error
    second = np.array(at.session_state["probabilities"])
    x = to_mnist(render_digit(7, 50, 40, 170, width=16))
    expected = np.asarray(other(x[None, ..., None], training=False))[0]
    # the app's probabilities are float32 results (tf.function) returned as float64
    assert_close(second.astype(np.float32), expected, "app after a model swap vs direct call")
    assert np.abs(second - first).max() > 0.05


def test_a_swapped_model_with_the_same_mtime_is_still_picked_up(good_model, tmp_path,
                                                                monkeypatch):
    """`cp -p` / `rsync -t` / unpacking an archive can give the new file the old mtime:
    the cache key must notice the change anyway."""
    from tests._helpers_app import small_model

    served = tmp_path / "served.keras"
    shutil.copyfile(good_model, served)
    monkeypatch.setenv("MNIST_CNN_MODEL", str(served))
    at = _predicts(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    st = served.stat()
    tmp = tmp_path / "other.keras"
    small_model(seed=2).save(tmp)
    os.replace(tmp, served)
    os.utime(served, ns=(st.st_atime_ns, st.st_mtime_ns))  # same timestamp as before
    at = _predicts(at.run())
    assert not at.error
    assert "parameters" in _texts(at.sidebar.caption)
    params = int(_texts(at.sidebar.caption).split(" parameters")[0].split()[-1].replace(",", ""))
    assert params == small_model(seed=2).count_params()


def test_model_error_offers_a_retry(good_model, tmp_path, monkeypatch):
    """After a model error the page has a button to try again once the file is back (F6)."""
    served = tmp_path / "served.keras"
    monkeypatch.setenv("MNIST_CNN_MODEL", str(served))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert "No model file" in _texts(at.error)
    [retry] = [b for b in at.button if "Try again" in b.label]
    shutil.copyfile(good_model, served)
    at = retry.click().run()
    assert not at.exception and not at.error, _texts(at.error)
    at = _predicts(at)
    assert at.metric[0].value == "7"


# --------------------------------------------------------------------------- (b) Ctrl-C


def _check_untouched(folder: Path, before: dict[str, str]) -> None:
    now = folder_hashes(folder)
    assert now == before, f"folder changed: {sorted(now)} vs {sorted(before)}"  # no temp files


# (command, model file, extra arguments, progress marker, wait after it)
_NUMPY_RUN = ("train-numpy", "numpy_cnn.npz",
              ["--limit", "2000", "--epochs", "3", "--batch-size", "4"], "epoch 1/3", 0.3)
_KERAS_RUN = ("train-keras", "cnn_model.keras",
              ["--limit", "3000", "--epochs", "3", "--batch-size", "8"], "Epoch 1/3", 1.0)


# What matters is the exit status and the untouched folder, not how fast a shared machine
# stops: no bound on the time from the signal to the exit. The timeout only turns a hang
# (a signal that is never acted on) into a failure instead of a stalled run.
@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize(("run", "sig"), [
    (_NUMPY_RUN, signal.SIGINT),   # Ctrl-C
    (_KERAS_RUN, signal.SIGINT),
    (_NUMPY_RUN, signal.SIGTERM),  # what a hosting platform sends to stop a job
], ids=["numpy-ctrl-c", "keras-ctrl-c", "numpy-sigterm"])
def test_interrupted_training_leaves_previous_model_intact(tmp_path, run, sig):
    command, name, extra, marker, after = run
    before = place_previous_model(tmp_path, name)
    code, out, _ = interrupt_training(command, tmp_path / name, extra, marker,
                                      after=after, sig=sig)
    assert code == 130, out[-2000:]
    assert "Interrupted; no partial files were written." in out, out[-2000:]
    assert "Traceback" not in out, out[-2000:]
    _check_untouched(tmp_path, before)


# --------------------------------------------------------------------------- (c) cache


@pytest.fixture(scope="module")
def raw_files():
    root = data.fetch_mnist(progress=False).cache_dir
    return {name: (root / name).read_bytes() for name in data.FILES}


def _flip_pixel_byte(b: bytes) -> bytes:
    i = len(b) // 2  # well inside the pixel data, past the IDX header
    return b[:i] + bytes([b[i] ^ 0x80]) + b[i + 1:]


@pytest.mark.parametrize("victim, corrupt", [
    ("train-images-idx3-ubyte", _flip_pixel_byte),      # one pixel of one training image
    ("train-labels-idx1-ubyte", lambda b: b[: len(b) // 2]),  # truncated
    ("t10k-images-idx3-ubyte", lambda b: b""),          # emptied
    ("t10k-labels-idx1-ubyte", lambda b: b + b"\x00"),  # one byte appended
], ids=["flipped-pixel", "truncated", "empty", "appended"])
def test_corrupted_cache_file_is_replaced_on_next_load(tmp_path, raw_files, victim, corrupt):
    for name, blob in raw_files.items():
        (tmp_path / name).write_bytes(blob)  # copies: never touch the real cache
    good = data.Source("good copy", lambda names: {n: raw_files[n] for n in names})
    data.load_mnist(tmp_path, sources=[good], progress=False)  # a first, clean load

    (tmp_path / victim).write_bytes(corrupt(raw_files[victim]))
    assert data.verify_cache(tmp_path)[victim] != "ok"
    report = data.fetch_mnist(tmp_path, sources=[good], progress=False)
    assert report.source == "good copy"
    assert report.replaced == [victim]
    (x_train, y_train), (x_test, y_test) = data.load_mnist(tmp_path, sources=[], progress=False)
    assert set(data.verify_cache(tmp_path).values()) == {"ok"}
    assert (tmp_path / victim).read_bytes() == raw_files[victim]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(data.FILES)  # no temp files
    assert x_train.shape == (60000, *data.IMAGE_SHAPE) and y_test.shape == (10000,)


# --------------------------------------------------------------------------- (d) read-only


def _as_unprivileged(code: str, *args: str) -> subprocess.CompletedProcess:
    """Run python ``code`` so that directory permissions apply (also when we are root)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop(data.ENV_CACHE, None)
    prefix = DROP_CAPS if os.geteuid() == 0 else []
    return subprocess.run([*prefix, sys.executable, "-c", code, *args], capture_output=True,
                          text=True, env=env, timeout=120)


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory that the code under test can read but not write."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot make a directory read-only")
    ro = tmp_path / "ro-cache"
    ro.mkdir()
    yield ro, lambda: ro.chmod(0o555)
    ro.chmod(0o755)


def test_read_only_empty_cache_is_a_clear_error_naming_the_directory(read_only_dir):
    ro, lock = read_only_dir
    lock()
    res = _as_unprivileged("import sys\nfrom mnist_cnn.cli import main\n"
                           "sys.exit(main(['data', '--cache-dir', sys.argv[1]]))", str(ro))
    assert res.returncode == 1, res.stderr
    assert "error:" in res.stderr and str(ro) in res.stderr and "not writable" in res.stderr
    assert "Traceback" not in res.stderr
    assert list(ro.iterdir()) == []


def test_read_only_verified_cache_still_loads(read_only_dir, raw_files):
    """A shared, read-only copy of the verified files is enough: loading writes nothing."""
    ro, lock = read_only_dir
    for name, blob in raw_files.items():
        (ro / name).write_bytes(blob)
        (ro / name).chmod(0o444)
    lock()
    res = _as_unprivileged(
        "import sys\nfrom mnist_cnn.data import load_mnist\n"
        "(x, y), (xt, yt) = load_mnist(sys.argv[1], sources=[], progress=False)\n"
        "print(x.shape, int(y[:100].sum()))", str(ro))
    assert res.returncode == 0, res.stderr
    labels = np.frombuffer(raw_files["train-labels-idx1-ubyte"][8:108], np.uint8)
    assert f"(60000, 28, 28) {int(labels.sum())}" in res.stdout


# --------------------------------------------------------------------------- (e) safe loading


@pytest.fixture(scope="module")
def lambda_model(tmp_path_factory):
    """A .keras file whose Lambda layer would create a marker file if its code ever ran."""
    from mnist_cnn.backend import import_keras

    keras = import_keras()
    folder = tmp_path_factory.mktemp("lambda")
    marker = folder / "code-ran"
    path = folder / "evil.keras"

    def evil(t, _marker=str(marker)):
        open(_marker, "w").close()  # noqa: SIM115 - the side effect is the point
        return t

    model = keras.Sequential([keras.Input(data.INPUT_SHAPE), keras.layers.Lambda(evil),
                              keras.layers.Flatten(), keras.layers.Dense(data.NUM_CLASSES)])
    model.save(path)
    marker.unlink(missing_ok=True)  # building the model ran it once, here, on purpose
    return path, marker


def test_lambda_model_is_refused_by_the_app(lambda_model, monkeypatch):
    path, marker = lambda_model
    monkeypatch.setenv("MNIST_CNN_MODEL", str(path))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    msg = _texts(at.error)
    assert "Lambda" in msg and str(path) in msg, msg
    assert not marker.exists(), "the Lambda layer's code ran while loading"


def test_lambda_model_is_refused_by_the_cli(lambda_model, tmp_path):
    path, marker = lambda_model
    img = tmp_path / "seven.png"
    from PIL import Image

    Image.fromarray(render_digit(7, 50, 40, 170, rgba=False)).save(img)
    res = subprocess.run([sys.executable, "-m", "mnist_cnn", "predict", str(img), "--model",
                          str(path)], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert res.returncode == 1
    assert "error:" in res.stderr and "Lambda" in res.stderr and "Traceback" not in res.stderr
    assert not marker.exists()


def test_npz_with_object_array_is_refused_by_the_cli(tmp_path):
    evil = tmp_path / "evil.npz"
    np.savez(evil, __architecture__=np.array([{"layers": []}], dtype=object))
    res = subprocess.run([sys.executable, "-m", "mnist_cnn", "evaluate", "--model", str(evil)],
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert res.returncode == 1
    assert "error:" in res.stderr and str(evil) in res.stderr and "Traceback" not in res.stderr
    assert "pickle" in res.stderr.lower() or "not a valid" in res.stderr


def test_model_and_card_are_replaced_together_or_not_at_all(tmp_path):
    from mnist_cnn import _io

    model, card = tmp_path / "m.npz", tmp_path / "m.json"
    model.write_bytes(b"old model")
    card.write_text("old card")
    with pytest.raises(RuntimeError, match="hashing failed"), \
            _io.atomic_pair(model, card) as (tmp, tmp_card):
        tmp.write_bytes(b"new model")
        assert model.read_bytes() == b"old model"        # nothing in place yet
        raise RuntimeError("hashing failed")
    assert model.read_bytes() == b"old model" and card.read_text() == "old card"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.npz"]   # no temp files

    with _io.atomic_pair(model, card) as (tmp, tmp_card):
        assert tmp.parent == tmp_path and tmp.suffix == ".npz"   # savers pick the format by suffix
        tmp.write_bytes(b"new model")
        tmp_card.write_text("new card")
    assert model.read_bytes() == b"new model" and card.read_text() == "new card"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.npz"]
