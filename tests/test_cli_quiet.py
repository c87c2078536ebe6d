"""The command line is quiet and complete (issue 23).

- Every command that takes a model takes a from-scratch NumPy model (``.npz``) as
  well as a Keras file (and so does the app), and a ``.npz`` never imports
  TensorFlow: each command runs in a fresh interpreter, which reports what is in
  ``sys.modules`` afterwards.
- No TensorFlow or CUDA start-up line (``cudart_stub ... Could not find cuda
  drivers``, ``E0000 ... failed call to cuInit``, ``WARNING: All log messages before
  absl::InitializeLog()``) reaches the output of any command, nor the stderr of the
  app's code path, in an environment without ``TF_CPP_MIN_LOG_LEVEL``: TensorFlow
  comes through :mod:`mnist_cnn.backend`, which silences and filters them.

Nothing here times a command: the cold start of ``predict`` with a ``.npz`` is
measured by ``bench predict``, not asserted (a shared machine's timings are noise).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from mnist_cnn import paths
from mnist_cnn.backend import is_startup_noise

from tests._helpers_app import render_digit, small_model

TIMEOUT = 600   # seconds per command: a hang guard, not a speed requirement

# Runs the CLI's main in this fresh interpreter, then says which frameworks it imported.
_MAIN_AND_REPORT = """import sys
from mnist_cnn.cli import main
rc = main(sys.argv[1:])
print("imported:", {m: m in sys.modules for m in ("tensorflow", "keras")})
sys.exit(rc)
"""


def _clean_env() -> dict[str, str]:
    """This environment without any setting that quiets TensorFlow by itself."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP_")}


def _run(argv: list[str], script: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", script, *argv] if script else [
        sys.executable, "-m", "mnist_cnn", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, env=_clean_env(),
                          cwd=paths.REPO_ROOT, timeout=TIMEOUT)


def _assert_quiet(res: subprocess.CompletedProcess) -> None:
    noise = [line for line in (res.stdout + res.stderr).splitlines()
             if is_startup_noise(line) or "cuInit" in line or "cudart" in line]
    assert not noise, "TensorFlow start-up lines in the output:\n" + "\n".join(noise)


def _assert_no_tensorflow(res: subprocess.CompletedProcess) -> None:
    assert res.returncode == 0, res.stderr[-3000:]
    imported = res.stdout.strip().splitlines()[-1]
    assert imported == "imported: {'tensorflow': False, 'keras': False}", imported


@pytest.fixture(scope="module")
def npz_model(tmp_path_factory):
    """The committed NumPy model, or an untrained from-scratch network of the same kind
    (what is checked here is the plumbing, not the accuracy)."""
    committed = paths.default_numpy_model()
    if committed.is_file():
        return committed
    from mnist_cnn.data import INPUT_SHAPE

    from tests._helpers_scratch import ConvBlock, small_cnn

    net = small_cnn(input_shape=INPUT_SHAPE, blocks=(ConvBlock(8),), hidden=None)
    return net.save(tmp_path_factory.mktemp("npz") / "numpy_cnn.npz")


@pytest.fixture(scope="module")
def small_keras(tmp_path_factory):
    """An untrained small Keras classifier: the commands that run it over the whole
    test set (evaluate, export-web) finish sooner than with the production model."""
    path = tmp_path_factory.mktemp("keras") / "small.keras"
    small_model().save(path)
    return path


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / "seven.png"
    Image.fromarray(render_digit(7, 40, 30, 180, width=16, rgba=False)).save(path)
    return path


# --------------------------------------------------------------------------- .npz models


def test_predict_with_an_npz_model_never_imports_tensorflow(npz_model, digit_png):
    res = _run(["predict", "--model", str(npz_model), str(digit_png)], _MAIN_AND_REPORT)
    _assert_no_tensorflow(res)
    assert res.stdout.startswith(f"{digit_png}: "), res.stdout
    assert res.stderr == ""
    _assert_quiet(res)


@pytest.mark.slow   # the full test set
def test_evaluate_with_an_npz_model_never_imports_tensorflow(npz_model):
    res = _run(["evaluate", "--model", str(npz_model), "--json"], _MAIN_AND_REPORT)
    _assert_no_tensorflow(res)
    figures = json.loads(res.stdout.splitlines()[0])
    assert figures["n_test"] == 10000 and figures["model"] == str(npz_model)
    _assert_quiet(res)


@pytest.mark.slow   # the validation split twice (float32, float16), the test set once
def test_export_web_takes_an_npz_model_without_tensorflow(npz_model, tmp_path):
    from mnist_cnn.scratch.layers import Dropout
    from mnist_cnn.scratch.network import Sequential
    from mnist_cnn.web import WEB_LAYERS, load_export

    res = _run(["export-web", "--model", str(npz_model), "--out", str(tmp_path)],
               _MAIN_AND_REPORT)
    _assert_no_tensorflow(res)
    assert f"Exported {npz_model.name} for the web" in res.stdout
    _assert_quiet(res)

    manifest, exported = load_export(tmp_path)
    net = Sequential.load(npz_model)
    kept = [layer for layer in net.layers if not isinstance(layer, Dropout)]
    classes = [e["class"] for e in manifest["layers"]]
    assert set(classes) <= set(WEB_LAYERS) and classes[-1] == "Softmax"
    assert classes[:len(kept)] == [type(layer).__name__ for layer in kept]
    assert manifest["model"] == npz_model.name and manifest["parameters"] == net.count_params()
    # exactly the .npz's weights, as shipped (float16 or float32) and widened to float32
    shipped = np.dtype(manifest["dtype"])
    for a, b in zip(exported.get_weights(), net.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b.astype(shipped).astype(np.float32))


def test_the_app_serves_an_npz_model_on_the_numpy_engine(npz_model, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests._helpers_app import APP, TIMEOUT
    from tests.test_app_streamlit import _draw, _texts

    monkeypatch.setenv("MNIST_CNN_MODEL", str(npz_model))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception and not at.error and not at.warning, _texts(at.error)
    assert at.sidebar.radio(key="engine").value == "numpy"      # the model's own engine
    at = _draw(at, render_digit(7, 50, 40, 170, width=16))
    assert not at.exception and not at.error and len(at.metric) == 1
    if npz_model == paths.default_numpy_model():                # trained: it reads the 7
        assert at.metric[0].value == "7"
    # the Keras engine, asked for, is a clear message and the answer stays on NumPy
    at.sidebar.radio(key="engine").set_value("keras").run()
    assert not at.exception and len(at.metric) == 1
    warning = _texts(at.warning)
    assert "NumPy engine instead" in warning and "numpy engine only" in warning, warning


# --------------------------------------------------------------------------- no start-up lines


def test_help_is_quiet():
    for argv in (["--help"], ["predict", "--help"], ["export-web", "--help"]):
        res = _run(argv)
        assert res.returncode == 0 and res.stderr == "", res.stderr
        _assert_quiet(res)
    assert ".npz" in _run(["predict", "--help"]).stdout


@pytest.mark.parametrize("engine", [None, "numpy"])
def test_predict_with_the_keras_model_prints_no_startup_lines(model_path, digit_png, engine):
    res = _run(["predict", "--model", str(model_path), str(digit_png)]
               + (["--engine", engine] if engine else []))
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.startswith(f"{digit_png}: 7"), res.stdout
    _assert_quiet(res)


@pytest.mark.slow   # the full test set
def test_evaluate_with_a_keras_model_prints_no_startup_lines(small_keras):
    res = _run(["evaluate", "--model", str(small_keras)])
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Test accuracy" in res.stdout
    _assert_quiet(res)


@pytest.mark.slow   # the validation split twice, the test set once
def test_export_web_with_a_keras_model_prints_no_startup_lines(small_keras, tmp_path):
    res = _run(["export-web", "--model", str(small_keras), "--out", str(tmp_path)])
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "weights.js").is_file()
    _assert_quiet(res)


def test_the_apps_code_path_writes_nothing_to_stderr(model_path):
    """What the app does with a Keras model (load, both engines, feature maps) in a
    fresh process: not one line on stderr."""
    script = """import sys
import numpy as np
from mnist_cnn.predict import Predictor
p = Predictor.from_file(sys.argv[1])
x = np.zeros((28, 28), np.float32)
x[6:22, 12:16] = 1
for engine in ("keras", "numpy"):
    p.predict_proba(x, engine)
    p.feature_maps(x, engine)
print("digit", p.predict(x))
"""
    res = _run([str(model_path)], script)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.startswith("digit ")
    assert res.stderr == "", res.stderr
    _assert_quiet(res)


def test_an_interrupt_inside_a_c_extension_still_counts_as_an_interrupt():
    """Ctrl-C landing inside TensorFlow's C code can surface as a SystemError chained
    to the KeyboardInterrupt; the command line must still treat it as Ctrl-C (130)."""
    from mnist_cnn.cli import interrupted

    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise SystemError("bad argument to internal function") from None
    except SystemError as exc:
        wrapped = exc
    assert wrapped.__context__ is not None and interrupted(wrapped)
    assert not interrupted(SystemError("a real bug"))
    assert interrupted(KeyboardInterrupt())
