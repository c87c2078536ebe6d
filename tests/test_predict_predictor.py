"""Predictor: safe loading, validation, engines agree, feature maps, CLI; a Keras
file and a from-scratch NumPy model (.npz) alike."""

import json

import numpy as np
import pytest
from mnist_cnn.backend import import_keras
from mnist_cnn.data import load_mnist, prepare_images
from mnist_cnn.model_files import load_mnist_model, load_numpy_mnist_model
from mnist_cnn.numerics import assert_close
from mnist_cnn.predict import Predictor, cli_predict, top_k
from mnist_cnn.preprocess import to_mnist
from mnist_cnn.shapes import IMAGE_SHAPE, INPUT_SHAPE, NUM_CLASSES

from tests._helpers_app import committed_or_small_model, render_digit, small_model

F32 = np.float32
# Predictor returns float64, but the engines compute in float32: comparisons of two
# computations are made in float32, the precision of the numbers compared.
# A float32 softmax row: 10 terms, each rounded a few times (exp, the normalising sum,
# the division); 100 units of rounding bound the row sum's distance from 1 with headroom.
SUM_RTOL = 100 * np.finfo(F32).eps


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return committed_or_small_model(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def predictor(model_path):
    return Predictor.from_file(model_path)


@pytest.fixture(scope="module")
def mnist_test():
    """200 test digits as a caller passes them: (N, 28, 28) floats in [0, 1]."""
    _, (x, y) = load_mnist(progress=False)
    return prepare_images(x[:200])[..., 0], y[:200]


def test_reads_mnist_digits(predictor, mnist_test):
    x, y = mnist_test
    probs = predictor.predict_proba(x)
    assert probs.shape == (200, NUM_CLASSES)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=SUM_RTOL)
    assert np.mean(probs.argmax(1) == y) >= 0.93
    # Single image: (10,) and the same numbers as in the batch.
    assert_close(predictor.predict_proba(x[3]).astype(F32), probs[3].astype(F32),
                 "predictor: one image vs the same image in a batch")
    assert predictor.predict(x[3]) == int(probs[3].argmax())


@pytest.mark.numerics
def test_fast_path_matches_model_predict(predictor, mnist_test):
    x, _ = mnist_test
    ref = predictor.model.predict(x[:16, ..., None], verbose=0)
    assert_close(predictor.predict_proba(x[:16]).astype(F32), ref,
                 "predictor: tf.function fast path vs model.predict")


@pytest.mark.numerics
def test_numpy_engine_agrees_with_keras(predictor, mnist_test):
    if predictor.problem("numpy"):
        pytest.skip("NumPy engine not available yet (bridge/scratch network)")
    x, _ = mnist_test
    pk = predictor.predict_proba(x[:32], "keras")
    pn = predictor.predict_proba(x[:32], "numpy")
    assert_close(pn.astype(F32), pk.astype(F32), "predictor: NumPy vs Keras engine")
    assert (pn.argmax(1) == pk.argmax(1)).all()


def test_drawn_digits_anywhere(predictor):
    for digit in (0, 1, 2, 3, 4, 7):
        for left, top, size, width in [(15, 20, 110, 10), (150, 150, 115, 12), (30, 30, 220, 22)]:
            x = to_mnist(render_digit(digit, left, top, size, width=width))
            assert predictor.predict(x) == digit, (digit, left, top, size)


@pytest.mark.numerics
def test_feature_maps_shapes_and_engines(predictor, mnist_test):
    x = mnist_test[0][0]
    maps = predictor.feature_maps(x)
    assert len(maps) >= 2
    names = [name for name, _ in maps]
    conv_names = [layer.name for layer in predictor.model.layers
                  if type(layer).__name__ == "Conv2D"]
    assert names == conv_names
    assert maps[0][1].shape[:2] == (26, 26) and maps[0][1].dtype == np.float32
    if predictor.problem("numpy") is None:
        nmaps = predictor.feature_maps(x, "numpy")
        assert [m.shape for _, m in nmaps] == [m.shape for _, m in maps]
        for (name, a), (_, b) in zip(maps, nmaps, strict=True):
            assert_close(b, a, f"feature maps {name}: NumPy vs Keras engine")


def test_bad_engine_and_bad_input(predictor):
    with pytest.raises(ValueError, match="engine"):
        predictor.predict_proba(np.zeros(IMAGE_SHAPE), "torch")
    with pytest.raises(ValueError, match="28x28"):
        predictor.predict_proba(np.zeros((32, 32)))


@pytest.mark.numerics
def test_channel_less_input_and_logits_models(tmp_path):
    x = np.random.default_rng(0).random((4, *IMAGE_SHAPE)).astype(np.float32)
    m3 = small_model(input_shape=IMAGE_SHAPE)
    p3 = Predictor(m3)
    assert_close(p3.predict_proba(x).astype(F32), m3(x).numpy(),
                 "predictor: (28, 28)-input model vs a direct call")
    # A model ending in logits still yields probabilities.
    ml = small_model(logits=True)
    pl = Predictor(ml).predict_proba(x)
    z = ml(x[..., None]).numpy()
    ez = np.exp(z - z.max(1, keepdims=True))
    assert_close(pl.astype(F32), ez / ez.sum(1, keepdims=True),
                 "predictor: softmax of a logits model vs NumPy's")


def test_loading_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-keras"):
        load_mnist_model(tmp_path / "missing.keras")
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"PK\x03\x04 definitely not a keras zip")
    with pytest.raises(ValueError):
        load_mnist_model(corrupt)
    keras = import_keras()
    wrong = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(NUM_CLASSES)])
    wrong.save(tmp_path / "wrong.keras")
    with pytest.raises(ValueError, match="input shape"):
        load_mnist_model(tmp_path / "wrong.keras")
    five = keras.Sequential([keras.Input(INPUT_SHAPE), keras.layers.Flatten(),
                             keras.layers.Dense(5)])
    five.save(tmp_path / "five.keras")
    with pytest.raises(ValueError, match="output shape"):
        load_mnist_model(tmp_path / "five.keras")


def test_env_var_selects_model(tmp_path, monkeypatch, model_path):
    monkeypatch.setenv("MNIST_CNN_MODEL", str(model_path))
    _, path = load_mnist_model()
    assert path == model_path


def test_top_k():
    p = np.array([0.1, 0.5, 0.0, 0.3, 0.1, 0, 0, 0, 0, 0])
    assert top_k(p, 3) == [(1, 0.5), (3, 0.3), (0, 0.1)]


def _args(images, model, json_mode=False, engine=None):
    import argparse

    return argparse.Namespace(images=[str(i) for i in images], model=str(model),
                              json=json_mode, engine=engine)


def test_cli_predict_lines_errors_and_exit_status(tmp_path, model_path, capsys):
    from PIL import Image

    seven = tmp_path / "seven.png"
    Image.fromarray(255 - render_digit(7, 40, 30, 180, width=16, rgba=False)).save(seven)
    one = tmp_path / "one.jpg"
    Image.fromarray(render_digit(1, 100, 40, 150, width=16, rgba=False)).save(one)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    blank = tmp_path / "blank.png"
    Image.new("L", (50, 50), 255).save(blank)

    assert cli_predict(_args([seven, one], model_path)) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    assert out[0].startswith(f"{seven}: 7") and "top-3" in out[0]
    assert out[1].startswith(f"{one}: 1")

    rc = cli_predict(_args([seven, bad, blank, tmp_path / "missing.png", one], model_path,
                           json_mode=True))
    assert rc == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["file"] for row in lines] == [str(seven), str(bad), str(blank),
                                               str(tmp_path / "missing.png"), str(one)]
    assert lines[0]["digit"] == 7 and len(lines[0]["probabilities"]) == NUM_CLASSES
    # printed rounded to 6 decimals: 10 terms of at most 5e-7 each, besides float32 rounding
    np.testing.assert_allclose(sum(lines[0]["probabilities"]), 1.0,
                               rtol=NUM_CLASSES * 5e-7 + SUM_RTOL)
    assert "not a supported image" in lines[1]["error"]
    assert "blank" in lines[2]["error"]
    assert "no such image" in lines[3]["error"]
    assert lines[4]["digit"] == 1


def test_cli_main_missing_model_is_a_clear_error(tmp_path, capsys):
    from mnist_cnn.cli import main

    rc = main(["predict", str(tmp_path / "x.png"), "--model", str(tmp_path / "none.keras")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "error:" in err and "train-keras" in err


def test_problem_names_why_an_engine_cannot_run_the_model(predictor, tmp_path):
    assert predictor.problem("keras") is None
    assert "unknown engine" in predictor.problem("torch")
    keras = import_keras()
    model = keras.Sequential([keras.Input(INPUT_SHAPE),
                              keras.layers.Conv2D(4, 3, activation="tanh"),
                              keras.layers.Flatten(), keras.layers.Dense(NUM_CLASSES)])
    odd = Predictor(model)
    assert odd.problem("keras") is None
    assert "cannot run this model" in odd.problem("numpy")


# --------------------------------------------------------------------------- NumPy models


@pytest.fixture(scope="module")
def npz_path(model_path, tmp_path_factory):
    """The Keras model's weights in the from-scratch network, saved as a NumPy model."""
    from mnist_cnn.bridge import from_keras

    return from_keras(model_path).save(tmp_path_factory.mktemp("npz") / "bridged.npz")


@pytest.fixture(scope="module")
def npz_predictor(npz_path):
    return Predictor.from_file(npz_path)


@pytest.mark.numerics
def test_npz_model_runs_on_the_numpy_engine_only(npz_predictor, predictor, mnist_test):
    x, y = mnist_test
    p = npz_predictor
    assert p.default_engine == "numpy" and p.problem() is None and p.problem("numpy") is None
    why = p.problem("keras")
    assert "bridged.npz" in why and "NumPy model (.npz)" in why and "numpy engine only" in why
    with pytest.raises(ValueError, match="numpy engine only"):
        p.predict_proba(x[0], "keras")
    with pytest.raises(ValueError, match="numpy engine only"):
        p.feature_maps(x[0], "keras")
    probs = p.predict_proba(x)
    assert probs.shape == (200, NUM_CLASSES) and np.mean(probs.argmax(1) == y) >= 0.93
    # the same weights as the Keras file, in the same engine
    assert_close(probs.astype(F32), predictor.predict_proba(x, "numpy").astype(F32),
                 "predictor: .npz model vs the Keras model's NumPy engine")
    assert p.predict(x[3]) == int(probs[3].argmax())
    assert len(p.conv_blocks) == len(predictor.conv_blocks)
    maps, ref = p.feature_maps(x[0]), predictor.feature_maps(x[0], "numpy")
    assert [n for n, _ in maps] == [n for n, _ in ref]
    for (name, a), (_, b) in zip(maps, ref, strict=True):
        assert_close(a, b, f"feature maps {name}: .npz model vs the NumPy engine")


def test_npz_loading_errors(tmp_path):
    from mnist_cnn.scratch import Dense, Flatten, Sequential

    with pytest.raises(FileNotFoundError, match="train-numpy"):
        Predictor.from_file(tmp_path / "missing.npz")
    Sequential([Flatten(), Dense(NUM_CLASSES)], input_shape=(32, 32, 3)).save(tmp_path / "wide.npz")
    with pytest.raises(ValueError, match="input shape"):
        load_numpy_mnist_model(tmp_path / "wide.npz")
    Sequential([Flatten(), Dense(5)], input_shape=INPUT_SHAPE).save(tmp_path / "five.npz")
    with pytest.raises(ValueError, match="output shape"):
        Predictor.from_file(tmp_path / "five.npz")
    # the Keras loader names the format instead of Keras' "File format not supported"
    with pytest.raises(ValueError, match=r"NumPy model \(.npz\), not a Keras model"):
        load_mnist_model(tmp_path / "five.npz")


def test_npz_channel_less_network():
    from mnist_cnn.scratch import Dense, Flatten, Sequential

    net = Sequential([Flatten(), Dense(NUM_CLASSES)], input_shape=IMAGE_SHAPE)
    x = np.random.default_rng(0).random((3, *IMAGE_SHAPE)).astype(F32)
    p = Predictor(net)
    assert "this model is a from-scratch NumPy model" in p.problem("keras")
    assert_close(p.predict_proba(x).astype(F32), net.predict_proba(x),
                 "predictor: (28, 28)-input NumPy network vs its own predict_proba")


def test_cli_predict_with_an_npz_model(tmp_path, npz_path, capsys):
    from mnist_cnn.cli import main
    from PIL import Image

    seven = tmp_path / "seven.png"
    Image.fromarray(render_digit(7, 40, 30, 180, width=16, rgba=False)).save(seven)
    assert cli_predict(_args([seven], npz_path)) == 0                  # numpy by default
    assert capsys.readouterr().out.startswith(f"{seven}: 7")
    assert cli_predict(_args([seven], npz_path, engine="numpy")) == 0
    assert capsys.readouterr().out.startswith(f"{seven}: 7")
    # asking for the Keras engine is one clear line, before any image is read
    assert main(["predict", str(seven), "--model", str(npz_path), "--engine", "keras"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: --engine keras: bridged.npz is a from-scratch NumPy model")
    assert "leave out --engine" in err and err.count("\n") == 1


def test_bench_predict_refuses_an_npz_model_clearly(npz_path, capsys):
    from mnist_cnn.cli import main

    assert main(["bench", "predict", "--model", str(npz_path)]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "Keras model (.keras or .h5)" in err and str(npz_path) in err
