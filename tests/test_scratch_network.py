"""The scratch network: end-to-end gradient check, learning, save/load, determinism,
clear errors on bad files, and the train-numpy CLI on a small subset."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from mnist_cnn import _io
from mnist_cnn.cards import check_card
from mnist_cnn.notebook import numerical_gradient
from mnist_cnn.numerics import assert_close, assert_gradient_close
from mnist_cnn.scratch import Dense, Dropout, ReLU, Sequential
from mnist_cnn.scratch import functional as F
from mnist_cnn.scratch.optim import SGD, Adam
from mnist_cnn.scratch.train import (
    build_model,
    fit,
    loss_and_accuracy,
    prepare_images,
    random_shift,
)
from mnist_cnn.shapes import INPUT_SHAPE

from tests._helpers_scratch import ConvBlock, small_cnn

pytestmark = pytest.mark.numerics


# 'same' and 'valid' padding, a kernel of 3 and of 2, stride 1 and 2, a block with
# and one without a pool: the whole-network gradient check goes through each.
MIXED_BLOCKS = (ConvBlock(3, padding="same"), ConvBlock(4, 2, strides=2, pool=False))


@pytest.fixture(scope="module")
def mnist_small():
    from mnist_cnn.data import load_mnist

    (x, y), (xt, yt) = load_mnist(progress=False)
    return prepare_images(x[:512]), y[:512].astype(np.intp), prepare_images(xt[:500]), yt[:500]


@pytest.mark.parametrize("softmax", [False, True])
def test_whole_network_gradient_check_float64(softmax):
    rng = np.random.default_rng(0)
    net = small_cnn(input_shape=(8, 8, 1), blocks=MIXED_BLOCKS, hidden=6,
                    softmax=softmax).astype(np.float64)
    x = rng.standard_normal((3, 8, 8, 1))
    y = np.array([1, 7, 3])
    net.loss_and_backward(x, y, training=False)
    analytic = [g.copy() for g in net.gradients()]

    def loss():
        return F.cross_entropy(net.forward(x), y, from_logits=not softmax)

    for (name, p), g in zip(net.named_parameters(), analytic, strict=True):
        assert_gradient_close(g, numerical_gradient(loss, p), f"whole network, {name}")


def test_summary_shapes_and_param_count():
    net = build_model(seed=0)
    text = net.summary()
    assert "(None, 26, 26, 32)" in text and "(None, 5, 5, 64)" in text
    # conv 3*3*1*32+32, conv 3*3*32*64+64, dense 1600*128+128, dense 128*10+10
    expected = 320 + 18496 + 204928 + 1290
    assert net.count_params() == expected
    assert f"Total params: {expected:,}" in text
    assert [w.shape for w in net.get_weights()] == [
        (3, 3, 1, 32), (32,), (3, 3, 32, 64), (64,), (1600, 128), (128,), (128, 10), (10,)]
    assert all(w.dtype == np.float32 for w in net.get_weights())


def test_initialisation_scales():
    net = build_model(seed=3)
    w = net.layers[7].params["W"]      # Dense(128) followed by ReLU: He, std sqrt(2/1600)
    assert abs(w.std() - np.sqrt(2 / 1600)) < 0.1 * np.sqrt(2 / 1600)
    w_out = net.layers[-1].params["W"]   # final Dense: Glorot uniform
    limit = np.sqrt(6 / (128 + 10))
    assert np.abs(w_out).max() <= limit and np.abs(w_out).max() > 0.9 * limit


def test_dropout_layer():
    d = Dropout(0.5)
    d.build((1000,), np.random.default_rng(0))
    x = np.ones((4, 1000), np.float32)
    np.testing.assert_array_equal(d.forward(x, training=False), x)
    out = d.forward(x, training=True)
    assert set(np.unique(out)) == {0.0, 2.0}
    assert abs(out.mean() - 1.0) < 0.05          # inverted dropout keeps the mean
    np.testing.assert_array_equal(d.backward(np.ones_like(x)), out)
    with pytest.raises(ValueError, match="rate"):
        Dropout(1.0)


@pytest.mark.parametrize("make_opt", [lambda: SGD(0.05, momentum=0.9), lambda: Adam(3e-3)])
def test_loss_decreases_on_a_small_batch(mnist_small, make_opt):
    x, y = mnist_small[0][:64], mnist_small[1][:64]
    net = small_cnn(input_shape=INPUT_SHAPE, blocks=(ConvBlock(8),), hidden=None)
    opt = make_opt()
    losses = []
    for _ in range(30):
        loss, _ = net.loss_and_backward(x, y)
        opt.step(net.parameters(), net.gradients())
        losses.append(loss)
    assert losses[-1] < 0.5 * losses[0]


def test_adam_matches_the_textbook_update():
    """Adam's in-place update equals Kingma & Ba's formulas with bias-corrected
    moments (float64, several steps, changing gradients), and it keeps working
    when the parameters change dtype (its work arrays follow them)."""
    rng = np.random.default_rng(3)
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-7
    params = [rng.standard_normal((4, 3)), rng.standard_normal(5)]
    ref = [p.copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    opt = Adam(lr, b1, b2, eps)
    for t in range(1, 6):
        grads = [rng.standard_normal(p.shape) for p in params]
        opt.step(params, grads)
        for i, g in enumerate(grads):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            ref[i] = ref[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
    for p, r in zip(params, ref, strict=True):
        assert_close(p, r, "Adam vs its equations (float64)")
    as32 = [p.astype(np.float32) for p in params]
    opt.state.update(m=[a.astype(np.float32) for a in m], v=[a.astype(np.float32) for a in v])
    opt.step(as32, [np.ones_like(p) for p in as32])
    t = 6
    for p, r, mi, vi in zip(as32, ref, m, v, strict=True):
        m6, v6 = b1 * mi + (1 - b1), b2 * vi + (1 - b2)
        want = r - lr * (m6 / (1 - b1**t)) / (np.sqrt(v6 / (1 - b2**t)) + eps)
        assert p.dtype == np.float32
        assert_close(p, want, "Adam step in float32")


def test_overfits_100_images(mnist_small):
    x, y = mnist_small[0][:100], mnist_small[1][:100]
    net = small_cnn(input_shape=INPUT_SHAPE, blocks=(ConvBlock(8),), hidden=None)
    fit(net, x, y, epochs=40, batch_size=25, optimizer=Adam(5e-3), seed=0, progress=False)
    assert (net.predict(x) == y).mean() == 1.0


def test_save_load_round_trip(tmp_path, mnist_small):
    x = mnist_small[2][:50]
    net = build_model(seed=1)
    fit(net, mnist_small[0][:128], mnist_small[1][:128], epochs=1, batch_size=64,
        seed=1, progress=False)
    path = net.save(tmp_path / "m.npz")
    loaded = Sequential.load(path)
    assert loaded.summary() == net.summary()
    np.testing.assert_array_equal(loaded.predict_proba(x), net.predict_proba(x))
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
    with pytest.raises(ValueError, match=r"expected inputs of shape \(N, 28, 28, 1\)"):
        loaded.predict(x[..., 0])       # (N, 28, 28): prepare_images adds the channel
    with np.load(path, allow_pickle=False) as data:
        arch = json.loads(str(data["__architecture__"]))
    assert [c["class"] for c in arch["layers"]][:3] == ["Conv2D", "ReLU", "MaxPooling2D"]
    assert [n for n, _ in loaded.activations(x[:2])] == [layer.name for layer in net.layers]


def test_from_config_rebuilds_the_network_get_config_describes(mnist_small):
    x = mnist_small[2][:20]
    net = build_model(seed=1, dropout=0.3)
    config = net.get_config()
    twin = Sequential.from_config(config, [w.copy() for w in net.get_weights()])
    assert twin.get_config() == config and twin.summary() == net.summary()
    np.testing.assert_array_equal(twin.predict_proba(x), net.predict_proba(x))
    fresh = Sequential.from_config(config)                    # same seed: same weights
    for a, b in zip(fresh.get_weights(), build_model(seed=1, dropout=0.3).get_weights(),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="not a mnist_cnn network description"):
        Sequential.from_config({**config, "format": "keras"})
    with pytest.raises(ValueError, match="unsupported model format version"):
        Sequential.from_config({**config, "version": 999})
    with pytest.raises(ValueError):                           # weights of another shape
        Sequential.from_config(config, [w[..., :1] for w in net.get_weights()])


def test_same_seed_same_weights(mnist_small):
    x, y = mnist_small[0][:256], mnist_small[1][:256]

    def run(seed):
        net = build_model(seed=seed)
        fit(net, x, y, epochs=1, batch_size=64, seed=seed, shift=2, progress=False)
        return net.get_weights()

    a, b, c = run(5), run(5), run(6)
    for wa, wb in zip(a, b, strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(a, c, strict=True))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        Sequential.load(tmp_path / "missing.npz")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 this is not really a zip file")
    with pytest.raises(ValueError, match="not a valid mnist_cnn NumPy model"):
        Sequential.load(corrupt)
    other = tmp_path / "other.npz"
    np.savez(other, weights=np.zeros(3))
    with pytest.raises(ValueError, match="no architecture record"):
        Sequential.load(other)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, __architecture__=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(ValueError, match="not a valid"):
        Sequential.load(pickled)
    # a truncated copy of a real model
    good = small_cnn().save(tmp_path / "good.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError):
        Sequential.load(truncated)
    # right format, weights that do not fit the architecture
    with zipfile.ZipFile(good) as zf:
        names = zf.namelist()
    assert "__architecture__.npy" in names
    with np.load(good) as data:
        arrays = dict(data)
    arrays["0/W"] = np.zeros((2, 2, 1, 3), np.float32)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(ValueError, match="shape"):
        Sequential.load(bad)


def test_bad_inputs_raise_clear_errors():
    net = build_model()
    with pytest.raises(ValueError, match=r"\(N, 28, 28, 1\).*\(5, 28, 28, 3\)"):
        net.forward(np.zeros((5, 28, 28, 3), np.float32))
    with pytest.raises(ValueError, match="one example"):
        net.forward(np.zeros(INPUT_SHAPE, np.float32))
    with pytest.raises(ValueError, match="unique"):
        Sequential([ReLU(name="a"), ReLU(name="a")], input_shape=(4,))
    with pytest.raises(ValueError, match="Flatten"):
        Sequential([Dense(3)], input_shape=(4, 4, 1))


def test_random_shift_moves_pixels():
    x = np.zeros((50, 6, 6, 1), np.float32)
    x[:, 3, 3, 0] = 1
    out = random_shift(x, np.random.default_rng(0), 2)
    assert out.shape == x.shape and out.sum() == 50
    pos = np.argwhere(out[..., 0] == 1)[:, 1:]
    assert np.all(np.abs(pos - 3) <= 2) and len(np.unique(pos, axis=0)) > 5


def test_loss_and_accuracy_match_the_predictions(mnist_small):
    net = build_model(seed=0)
    x, y = mnist_small[2][:100], mnist_small[3][:100]
    ev = loss_and_accuracy(net, x, y)
    assert ev["accuracy"] == pytest.approx((net.predict(x) == y).mean())
    assert ev["loss"] == pytest.approx(F.cross_entropy(net.predict_proba(x), y))


@pytest.mark.slow
def test_cli_train_numpy_small_run(tmp_path, capsys):
    from mnist_cnn.cli import main

    out = tmp_path / "tiny.npz"
    assert main(["train-numpy", "--limit", "256", "--epochs", "1", "--out", str(out)]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    check_card(card)
    # --limit 256: the last tenth (25) is the validation set, the rest is trained on
    assert (card["train_images"], card["validation_images"]) == (231, 25)
    assert sum(map(sum, card["confusion_matrix"])) == 10000 and card["engine"] == "numpy"
    assert 0 <= card["test_accuracy"] <= 1 and len(card["history"]["loss"]) == 1
    assert "fast" in card["training_path"] and card["best_epoch"] == 1
    assert card["params"] == Sequential.load(out).count_params()
    for key in ("seconds_per_epoch", "seed", "data_sha256", "versions", "architecture",
                "command", "test_loss", "sha256"):
        assert key in card
    assert "--limit 256" in card["command"]
    assert card["sha256"] == _io.sha256_file(out)
    assert "test accuracy" in capsys.readouterr().out
    assert main(["train-numpy", "--epochs", "0", "--out", str(out)]) == 1


@pytest.mark.slow
def test_cli_train_numpy_failed_save_keeps_the_previous_model_and_card(tmp_path, capsys,
                                                                       monkeypatch):
    """The disk fills up while the card is written: a clear error, and the
    previous model and card are both untouched (no new model beside an old card)."""
    from mnist_cnn.cli import main

    out = tmp_path / "tiny.npz"
    run = ["train-numpy", "--limit", "128", "--epochs", "1", "--out", str(out)]
    assert main(run) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert set(before) == {"tiny.npz", "tiny.json"}

    def full_disk(path, obj):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(_io, "write_json", full_disk)
    assert main([*run, "--seed", "1"]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("make", [lambda wd: SGD(0.1, momentum=0.5, weight_decay=wd),
                                  lambda wd: Adam(1e-2, weight_decay=wd)],
                         ids=["SGD", "Adam"])
def test_weight_decay_is_the_gradient_of_the_l2_penalty(make):
    """A step with weight_decay is the step without it on g + weight_decay * p, the
    gradient of loss + (weight_decay / 2) * ||p||^2; with a zero gradient it shrinks
    the weights."""
    rng = np.random.default_rng(3)
    p0, g = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    a, b = p0.copy(), p0.copy()
    opt_a, opt_b = make(0.05), make(0.0)
    for _ in range(3):
        opt_a.step([a], [g])
        opt_b.step([b], [g + 0.05 * b])
    assert_close(a, b, "weight decay = the L2 penalty's gradient")
    c = p0.copy()
    make(0.05).step([c], [np.zeros_like(c)])
    assert np.linalg.norm(c) < np.linalg.norm(p0)
    with pytest.raises(ValueError, match="weight_decay"):
        make(-1.0)


def test_keep_best_ends_with_the_best_validation_epoch(mnist_small):
    """keep_best restores the weights of the best validation epoch: the same as
    training for just that many epochs with the same seeds."""
    x, y, xv, yv = mnist_small[0][:256], mnist_small[1][:256], mnist_small[2][:200], \
        mnist_small[3][:200]
    kept = build_model(seed=2)
    h = fit(kept, x, y, epochs=4, batch_size=64, seed=2, validation_data=(xv, yv),
            progress=False, keep_best=True)
    best = h["best_epoch"]
    assert h["val_accuracy"][best - 1] == max(h["val_accuracy"])
    assert all(a < h["val_accuracy"][best - 1] for a in h["val_accuracy"][best:])
    short = build_model(seed=2)
    fit(short, x, y, epochs=best, batch_size=64, seed=2, progress=False)
    for a, b in zip(kept.get_weights(), short.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
