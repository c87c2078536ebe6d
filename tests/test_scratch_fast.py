"""The speed layer (mnist_cnn.scratch.fast): the fused Conv2D -> ReLU ->
MaxPooling2D operation and sharded training steps give the plain engine's
numbers, are gradient checked, and are reproducible whatever the number of threads."""

from __future__ import annotations

import numpy as np
import pytest
from mnist_cnn.notebook import check_gradient
from mnist_cnn.numerics import GRADIENT_RTOL, assert_close
from mnist_cnn.scratch import functional as F
from mnist_cnn.scratch.fast import FastEngine, FusedPath, fused
from mnist_cnn.scratch.fast.fused import (
    ConvReluPool,
    conv2d_relu_maxpool,
    conv2d_relu_maxpool_backward,
)
from mnist_cnn.scratch.train import fit
from mnist_cnn.shapes import NUM_CLASSES

from tests._helpers_scratch import small_cnn

pytestmark = pytest.mark.numerics

# (x shape, w shape, conv stride, padding, pool, pool stride): one input channel
# (recomputing path) and several (stored path), overlapping and odd-sized pools,
# strided convolutions, "same" padding with its asymmetric case, dropped edges,
# and pools that skip positions (stride > window).
CASES = [
    ((3, 9, 9, 1), (3, 3, 1, 4), 1, "valid", 2, None),
    ((2, 11, 10, 5), (3, 2, 5, 3), 1, "same", 3, 2),
    ((2, 12, 12, 2), (3, 3, 2, 4), 2, "same", 2, 1),
    ((2, 13, 13, 6), (3, 3, 6, 5), 1, "valid", 2, None),
    ((4, 10, 10, 1), (5, 5, 1, 3), 1, "same", 2, 2),
    ((2, 12, 11, 3), (3, 3, 3, 4), 1, "valid", 2, 3),
]


def _unfused(x, w, b, s, pad, pool, ps):
    c, cc = F.conv2d(x, w, b, s, pad)
    r, rc = F.relu(c)
    out, pc = F.max_pool2d(r, pool, ps)
    return out, (cc, rc, pc)


def _unfused_backward(dout, caches, need_dx=True):
    cc, rc, pc = caches
    d = F.relu_backward(F.max_pool2d_backward(dout, pc), rc)
    return F.conv2d_backward(d, cc, need_dx)


@pytest.mark.parametrize("case", CASES)
def test_same_numbers_as_the_three_ops_with_ties(case):
    """Small integers make every product and sum exact; a mostly blank input (as
    MNIST's background) gives many ties (windows whose values all equal the bias)
    and zeros at the ReLU: forward and backward must agree exactly."""
    xs, ws, s, pad, pool, ps = case
    rng = np.random.default_rng(1)
    x = rng.integers(-2, 3, xs) * (rng.random(xs) < 0.3).astype(np.float64)
    w = rng.integers(-1, 2, ws).astype(np.float64)
    b = rng.integers(-3, 1, ws[3]).astype(np.float64)
    ref, caches = _unfused(x, w, b, s, pad, pool, ps)
    out, cache = conv2d_relu_maxpool(x, w, b, s, pad, pool, ps)
    np.testing.assert_array_equal(out, ref)
    assert 0.05 < (ref == 0).mean() < 0.95     # the ReLU really cuts, and not everything
    dout = rng.integers(-3, 4, ref.shape).astype(np.float64)
    for got, want in zip(conv2d_relu_maxpool_backward(dout, cache),
                         _unfused_backward(dout, caches), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("case", CASES)
def test_gradient_check(case):
    xs, ws, s, pad, pool, ps = case
    rng = np.random.default_rng(2)
    inputs = {"x": rng.standard_normal(xs), "w": rng.standard_normal(ws),
              "b": rng.standard_normal(ws[3])}
    state = {}

    def forward(x, w, b):
        out, state["cache"] = conv2d_relu_maxpool(x, w, b, s, pad, pool, ps)
        return out

    def grads(dout):
        dx, dw, db = conv2d_relu_maxpool_backward(dout, state["cache"])
        return {"x": dx, "w": dw, "b": db}

    for name, err in check_gradient(forward, grads, inputs, rng).items():
        assert err <= GRADIENT_RTOL, (name, err)


@pytest.mark.parametrize("chunk_bytes", [1, 3000, 1 << 30])
def test_chunking_does_not_change_the_numbers(monkeypatch, chunk_bytes):
    """The first-layer path computes in chunks of images (one image per chunk,
    a ragged last chunk, one chunk): same output and gradients as the three ops."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 12, 12, 1))
    w, b = rng.standard_normal((3, 3, 1, 4)), rng.standard_normal(4)
    ref, caches = _unfused(x, w, b, 1, "valid", 2, None)
    monkeypatch.setattr(fused, "_CHUNK_BYTES", chunk_bytes)
    out, cache = conv2d_relu_maxpool(x, w, b)
    assert_close(out, ref, "chunked fused forward vs three ops")
    dout = rng.standard_normal(out.shape)
    for got, want in zip(conv2d_relu_maxpool_backward(dout, cache, need_dx=True),
                         _unfused_backward(dout, caches), strict=True):
        assert_close(got, want, "chunked fused backward vs three ops")


def test_float32_stays_float32():
    rng = np.random.default_rng(4)
    for c_in in (1, 8):
        x = rng.random((2, 10, 10, c_in), dtype=np.float32)
        w = rng.standard_normal((3, 3, c_in, 4)).astype(np.float32)
        out, cache = conv2d_relu_maxpool(x, w, np.zeros(4, np.float32))
        assert out.dtype == np.float32
        assert all(g.dtype == np.float32 for g in conv2d_relu_maxpool_backward(out, cache))


def test_bad_arguments_raise_the_ops_errors():
    with pytest.raises(ValueError, match="channel mismatch"):
        conv2d_relu_maxpool(np.zeros((1, 8, 8, 2)), np.zeros((3, 3, 1, 4)), np.zeros(4))
    with pytest.raises(ValueError, match="larger than the input"):
        conv2d_relu_maxpool(np.zeros((1, 4, 4, 1)), np.zeros((3, 3, 1, 4)), np.zeros(4),
                            pool_size=3)


@pytest.mark.parametrize(("shards", "processes"), [(1, False), (2, False), (2, True), (3, True)])
def test_fast_engine_gives_the_plain_chain_numbers(shards, processes):
    """One batch in float64: the speed layer (fused blocks, shards on threads or
    processes) gives the plain chain's loss, logits and every gradient."""
    plain = small_cnn().astype(np.float64)
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((7, 14, 14, 1)), rng.integers(0, NUM_CLASSES, 7)
    lp, op = plain.loss_and_backward(x, y)
    gp = [g.copy() for g in plain.gradients()]
    engine = FastEngine(plain, shards=shards, workers=2, processes=processes)
    assert [type(s) for s in engine._whole.layers][:2] == [ConvReluPool, ConvReluPool]
    lf, of = engine.loss_and_backward(x, y)
    assert_close(lf, lp, "fast engine vs plain chain: loss")
    assert_close(of, op, "fast engine vs plain chain: logits")
    for a, b in zip(plain.gradients(), gp, strict=True):
        assert_close(a, b, "fast engine vs plain chain: gradients")
    assert_close(engine.forward(x), plain.forward(x), "fast engine vs plain chain: forward")


def test_fast_and_plain_training_give_the_same_digits():
    """A short seeded run (float64, 2 epochs) through fit: the plain chain and the
    speed layer (2 shards in a worker process) end with the same weights to
    rounding and the same predicted digits."""
    rng = np.random.default_rng(8)
    x, y = rng.random((96, 14, 14, 1)), rng.integers(0, NUM_CLASSES, 96)
    x[np.arange(96), y % 14, y % 14, 0] += 3.0          # something learnable
    nets = {}
    for fast in (False, True):
        net = small_cnn(seed=4).astype(np.float64)
        fit(net, x, y, epochs=2, batch_size=16, seed=4, progress=False,
            engine=FastEngine(net, shards=2, processes=True) if fast else None)
        nets[fast] = net
    for a, b in zip(nets[False].parameters(), nets[True].parameters(), strict=True):
        # 12 Adam steps amplify float64 rounding differences of the shard sums, so this
        # holds the trained weights to a looser bound than one computation (1000 ulps)
        assert_close(a, b, "fast vs plain training: weights after 2 epochs", rtol=1e-9)
    np.testing.assert_array_equal(nets[False].predict(x), nets[True].predict(x))


def test_fit_refuses_an_engine_built_for_another_network():
    rng = np.random.default_rng(8)
    x, y = rng.random((8, 14, 14, 1)), rng.integers(0, NUM_CLASSES, 8)
    net, other = small_cnn(seed=4), small_cnn(seed=4)
    before = [p.copy() for p in net.parameters()]
    with pytest.raises(ValueError, match="another network"):
        fit(net, x, y, epochs=1, batch_size=4, progress=False, engine=FastEngine(other))
    assert all((a == b).all() for a, b in zip(before, net.parameters(), strict=True))


def test_unsharded_fast_run_draws_the_plain_dropout_masks():
    """shards=1 runs the network's own layers, so dropout draws the same masks as
    the plain chain: a seeded float64 run with dropout gives the same numbers."""
    rng = np.random.default_rng(9)
    x, y = rng.random((8, 14, 14, 1)), rng.integers(0, NUM_CLASSES, 8)
    a, b = (small_cnn(seed=2, dropout=0.5).astype(np.float64) for _ in range(2))
    engine = FastEngine(b, shards=1)
    for _ in range(3):
        la, _ = a.loss_and_backward(x, y)
        lb, _ = engine.loss_and_backward(x, y)
        assert_close(la, lb, "unsharded fast run with dropout: loss")
        for ga, gb in zip(a.gradients(), b.gradients(), strict=True):
            assert_close(ga, gb, "unsharded fast run with dropout: gradients")


def test_shards_give_the_whole_batch_gradient():
    """Without dropout, the weighted mean of the shards' gradients is the gradient
    of the whole batch's mean loss, for even and uneven splits."""
    net = small_cnn().astype(np.float64)
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((7, 14, 14, 1)), rng.integers(0, NUM_CLASSES, 7)
    loss1, logits1 = FastEngine(net, shards=1).loss_and_backward(x, y)
    g1 = [g.copy() for g in net.gradients()]
    for shards in (2, 3, 7, 50):
        loss, logits = FastEngine(net, shards, workers=2, processes=False).loss_and_backward(x, y)
        assert_close(loss, loss1, "shards vs whole batch: loss")
        assert_close(logits, logits1, "shards vs whole batch: logits")
        for a, b in zip(net.gradients(), g1, strict=True):
            assert_close(a, b, "shards vs whole batch: gradients")


def test_sharded_numbers_do_not_depend_on_the_threads():
    """With dropout on, one thread or two give bit-identical steps, and so does a
    second network with the same seed."""
    rng = np.random.default_rng(7)
    x = rng.random((16, 14, 14, 1), dtype=np.float32)
    y = rng.integers(0, NUM_CLASSES, 16)

    def run(workers):
        net = small_cnn(seed=3, dropout=0.5)
        engine = FastEngine(net, shards=2, workers=workers, processes=False)
        out = [engine.loss_and_backward(x, y) for _ in range(3)]
        return out, net.gradients()

    (s1, g1), (s2, g2) = run(1), run(2)
    for (la, oa), (lb, ob) in zip(s1, s2, strict=True):
        assert la == lb
        np.testing.assert_array_equal(oa, ob)
    for a, b in zip(g1, g2, strict=True):
        np.testing.assert_array_equal(a, b)
    # Dropout is really active and the replicas' streams move on between steps.
    assert s1[0][0] != s1[1][0]


def test_replicas_share_the_weights_not_the_state():
    net = small_cnn(dropout=0.5)
    path = FusedPath(net, seeds=[1])
    for a, b in zip(path.source, net.layers, strict=True):
        assert a.params is b.params and a is not b
    drop = [layer.name for layer in net.layers].index("drop")
    assert path.source[drop]._rng is not net.layers[drop]._rng
    assert isinstance(path.layers[0], ConvReluPool) and path.layers[0].conv is path.source[0]
    own = FusedPath(net)
    assert own.source is net.layers and own.layers[0].conv is net.layers[0]


def test_loss_and_backward_rejects_mismatched_labels():
    for step in (small_cnn().loss_and_backward, FastEngine(small_cnn()).loss_and_backward):
        with pytest.raises(ValueError, match="same length"):
            step(np.zeros((4, 14, 14, 1), np.float32), np.zeros(3, int))


def test_fast_engine_says_what_it_does():
    text = FastEngine(small_cnn(), shards=2, workers=2, processes=True).describe()
    assert "fused" in text and "2 shards" in text and "worker processes" in text
