"""PCA by the SVD, activation maximisation and the reliability diagram's numbers:
checked against definitions computed another way (the covariance's eigenvectors,
a hand-binned count) and on the committed model."""

from __future__ import annotations

import numpy as np
import pytest
from mnist_cnn import paths
from mnist_cnn.data import prepare_images
from mnist_cnn.explain import dream, pca
from mnist_cnn.metrics import reliability
from mnist_cnn.numerics import assert_close
from mnist_cnn.scratch.network import Sequential
from mnist_cnn.shapes import INPUT_SHAPE

pytestmark = pytest.mark.numerics


def test_pca_equals_the_covariances_eigenvectors():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 5)) @ np.diag([5.0, 3.0, 1.0, 0.5, 0.1]) \
        @ np.linalg.qr(rng.standard_normal((5, 5)))[0] + 7.0
    scores, components, explained = pca(x, k=3)
    values, vectors = np.linalg.eigh(np.cov(x, rowvar=False))
    order = np.argsort(values)[::-1]
    for i in range(3):              # the same directions, up to sign
        assert abs(abs(components[i] @ vectors[:, order[i]]) - 1) < 1e-10
    np.testing.assert_allclose(explained, values[order][:3] / values.sum(), rtol=1e-10)
    np.testing.assert_allclose(scores, (x - x.mean(0)) @ components.T, atol=1e-10)
    np.testing.assert_allclose(scores.var(axis=0, ddof=1), values[order][:3], rtol=1e-10)
    with pytest.raises(ValueError, match="pca needs"):
        pca(x[0])


def test_reliability_bins_by_confidence_and_weighs_the_gaps():
    probs = np.array([[0.95, 0.05], [0.92, 0.08], [0.35, 0.65], [0.3, 0.7], [0.5, 0.5]])
    y = np.array([0, 1, 1, 1, 0])
    r = reliability(probs, y, bins=10)
    assert r["count"].tolist() == [0, 0, 0, 0, 1, 0, 2, 0, 0, 2]
    # (0.9, 1]: 0.95 right, 0.92 wrong; (0.6, 0.7]: 0.65 and 0.7, both right; (0.4, 0.5]: 0.5
    assert np.isnan(r["accuracy"][0]) and r["accuracy"][9] == 0.5
    np.testing.assert_allclose(r["confidence"][[4, 6, 9]], [0.5, 0.675, 0.935])
    expected = (1 * abs(1 - 0.5) + 2 * abs(1 - 0.675) + 2 * abs(0.5 - 0.935)) / 5
    assert r["ece"] == pytest.approx(expected)
    # a calibrated toy: labels drawn with the predicted probabilities
    rng = np.random.default_rng(1)
    p = rng.uniform(0.5, 1.0, 200_000)
    probs = np.stack([p, 1 - p], axis=1)
    y = (rng.random(p.size) >= p).astype(int)
    assert reliability(probs, y)["ece"] < 0.01


@pytest.fixture(scope="module")
def committed():
    return Sequential.load(paths.models_dir() / "numpy_cnn.npz")


def test_dream_raises_its_class_and_stays_an_image(committed):
    img, logits = dream(committed, 4, steps=60, seed=0)
    assert img.shape == INPUT_SHAPE and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0
    assert logits[-1] > logits[0] + 5 and logits[-1] == pytest.approx(
        float(committed.forward(img[None])[0, 4]), rel=1e-5)
    assert committed.predict(img[None])[0] == 4
    again, _ = dream(committed, 4, steps=60, seed=0)
    np.testing.assert_array_equal(img, again)            # the seed fixes the result
    # the L2 penalty keeps fewer pixels on
    heavy, _ = dream(committed, 4, steps=60, seed=0, l2=0.5)
    assert heavy.sum() < img.sum()


def test_dream_from_a_digit_moves_it_towards_the_target(committed, mnist):
    (x, y), _ = mnist
    start = prepare_images(x[y == 1][:1])[0]
    img, logits = dream(committed, 7, steps=80, start=start, jitter=0, l2=0.0, lr=0.05)
    assert committed.predict(start[None])[0] == 1 and committed.predict(img[None])[0] == 7


def test_layer_output_in_batches_is_the_layers_activation(committed, mnist):
    from mnist_cnn.explain import layer_output

    x = prepare_images(mnist[1][0][:70])
    whole = dict(committed.activations(x))
    for name in ("max_pooling2d", "relu_2"):
        # another batch size is another matrix product: equal by the float32 rule
        assert_close(layer_output(committed, x, name, batch_size=32), whole[name], name)
    with pytest.raises(ValueError, match="no layer named 'fc'"):
        layer_output(committed, x, "fc")


def test_top_patches_are_the_strongest_units_and_their_fields(committed, mnist):
    from mnist_cnn.explain import layer_output, top_patches

    x = prepare_images(mnist[1][0][:300])
    found = top_patches(committed, x, "relu_1", channel=5, k=4)
    maps = layer_output(committed, x, "relu_1")[..., 5]
    per_image = maps.reshape(300, -1).max(axis=1)
    assert [p["image"] for p in found] == list(np.argsort(-per_image, kind="stable")[:4])
    for p in found:
        r, c = p["unit"]
        assert p["value"] == maps[p["image"], r, c] == per_image[p["image"]]
        # conv 3 (3), pool 2 (4, jump 2), conv 3 (8): unit (r, c) sees rows 2r .. 2r + 7
        assert p["box"] == (2 * r, 2 * c, 2 * r + 8, 2 * c + 8)
        np.testing.assert_array_equal(p["patch"], x[p["image"], 2 * r:2 * r + 8,
                                                    2 * c:2 * c + 8, 0])
