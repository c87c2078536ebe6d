"""What does the network look at? Saliency, occlusion and adversarial digits.

All three are built on the scratch engine's own backward pass, run one layer
further than training needs: down to the pixels.

- :func:`input_gradient`: d(score)/d(pixels), for a class score or the loss;
- :func:`occlusion_map`: how much a class's probability drops when a square of
  the image is blacked out, for every position of the square;
- :func:`fgsm`: the fast gradient sign method, x + eps * sign(d loss / d x).

Example::

    >>> from mnist_cnn.explain import input_gradient
    >>> saliency = abs(input_gradient(net, x, y, score="class"))   # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from mnist_cnn.scratch import functional as F
from mnist_cnn.scratch.layers import Softmax
from mnist_cnn.scratch.network import Sequential

__all__ = ["input_gradient", "occlusion_map", "fgsm"]


def input_gradient(net: Sequential, x, y, score: str = "class") -> np.ndarray:
    """d score / d x for images x (N, 28, 28, 1) and labels y (N,), in inference mode.

    score: "class" for the logit of class y (saliency), or "loss" for each image's
    own cross-entropy (what an attack increases). A final Softmax layer is skipped.
    """
    layers = net.layers[:-1] if isinstance(net.layers[-1], Softmax) else net.layers
    x, y = net._check_input(x), np.asarray(y)
    first, keep = layers[0], layers[0].need_dx
    first.need_dx = True              # training never needs d/dx of the image; we do
    try:                              # forward, then backward from the score's gradient
        out = x
        for layer in layers:
            out = layer.forward(out, training=False)
        if score == "class":
            dout = F.one_hot(y, out.shape[-1], dtype=out.dtype)
        elif score == "loss":         # per image: the mean loss's gradient times N
            dout = (F.softmax_cross_entropy_backward(out, y) * len(y)).astype(out.dtype)
        else:
            raise ValueError(f"score must be 'class' or 'loss', got {score!r}")
        for layer in reversed(layers):
            dout = layer.backward(dout)
        return dout
    finally:
        first.need_dx = keep


def occlusion_map(predict_proba, image, label: int, patch: int = 6, stride: int = 2,
                  fill: float = 0.0) -> np.ndarray:
    """Occlusion sensitivity: slide a ``patch`` x ``patch`` square of ``fill`` over
    the image in steps of ``stride`` and record how much the probability of
    ``label`` drops. Large values mark the pixels the decision depends on.

    Inputs: predict_proba, images (N, 28, 28, 1) -> (N, 10); image (28, 28, 1).
    Returns (H_out, W_out) with H_out = (28 - patch) // stride + 1.
    """
    image = np.asarray(image, np.float32)
    h, w = image.shape[:2]
    rows, cols = range(0, h - patch + 1, stride), range(0, w - patch + 1, stride)
    batch = np.repeat(image[None], len(rows) * len(cols), axis=0)
    for i, (r, c) in enumerate((r, c) for r in rows for c in cols):
        batch[i, r:r + patch, c:c + patch] = fill
    base = predict_proba(image[None])[0, label]
    drops = base - predict_proba(batch)[:, label]
    return drops.reshape(len(rows), len(cols))


def fgsm(x, gradient, eps: float) -> np.ndarray:
    """Fast gradient sign method (Goodfellow et al., 2015): move every pixel by
    ``eps`` in the direction that increases the loss, then clip to [0, 1].

    Inputs: x images in [0, 1]; gradient d loss / d x (same shape); eps >= 0.
    """
    return np.clip(x + eps * np.sign(gradient), 0.0, 1.0).astype(np.asarray(x).dtype)
