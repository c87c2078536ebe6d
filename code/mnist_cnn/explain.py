"""What does the network look at? Saliency, Grad-CAM, occlusion and adversarial digits.

All three are built on the scratch engine's own backward pass, run one layer
further than training needs: down to the pixels.

- :func:`input_gradient`: d(score)/d(pixels), for a class score or the loss;
- :func:`occlusion_map`: how much a class's probability drops when a square of
  the image is blacked out, for every position of the square;
- :func:`fgsm`: the fast gradient sign method, x + eps * sign(d loss / d x);
- :func:`grad_cam`: Grad-CAM, a class's gradient-weighted sum of one conv
  layer's feature maps, and :func:`upsample` to lay it over the 28x28 digit;
- :func:`pca`: principal components by NumPy's SVD, to draw a layer's features
  of many digits in two dimensions;
- :func:`dream`: an input made by gradient ascent to excite one class.

Example::

    >>> from mnist_cnn.explain import input_gradient
    >>> saliency = abs(input_gradient(net, x, y, score="class"))   # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from mnist_cnn.scratch import functional as F
from mnist_cnn.scratch.layers import Softmax
from mnist_cnn.scratch.network import Sequential
from mnist_cnn.shapes import IMAGE_SHAPE

__all__ = ["input_gradient", "occlusion_map", "fgsm", "grad_cam", "upsample", "pca", "dream",
           "layer_output", "top_patches"]


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


def _feature_layer(layers, layer_name: str | None) -> int:
    """The index of ``layer_name`` in ``layers``, or of the last layer whose output
    is a stack of feature maps (H, W, C) if it is None."""
    maps = [i for i, layer in enumerate(layers) if len(layer.output_shape) == 3]
    if layer_name is None:
        if not maps:
            raise ValueError("the network has no layer with (H, W, C) outputs")
        return maps[-1]
    names = [layer.name for layer in layers]
    if layer_name not in names:
        raise ValueError(f"no layer named {layer_name!r}; layers: {', '.join(names)}")
    i = names.index(layer_name)
    if i not in maps:
        raise ValueError(f"layer {layer_name!r} outputs {layers[i].output_shape}, "
                         f"not feature maps (H, W, C)")
    return i


def grad_cam(net: Sequential, x, target, layer_name: str | None = None) -> np.ndarray:
    """Grad-CAM (Selvaraju et al., 2017): where in the image the evidence for a
    class lies, seen through one layer's feature maps A (N, H, W, C).

    For each image and its target class t, with y_t the class's logit:

        alpha_c = mean over (i, j) of d y_t / d A[i, j, c]    (N, C): how much
                  feature map c counts for the class, averaged over positions
        map     = ReLU(sum_c alpha_c * A[:, :, c])            (N, H, W)

    The ReLU keeps the places that raise the score. The score is the logit, as
    in the paper: if the network ends with a Softmax layer, that layer is
    skipped (a probability's gradient also depends on every other class);
    otherwise the last layer's outputs are taken to be the logits.

    The gradient is the engine's own backward pass, run from the logit down to
    ``layer_name``'s output only, in inference mode (Dropout off).

    Inputs:
    - net: a Sequential; x: images (N, *net.input_shape);
    - target: one class for every image, or (N,) classes;
    - layer_name: a layer with (H, W, C) outputs, usually the last conv layer
      or its ReLU; default the last such layer.
    Returns: maps (N, H, W) at that layer's resolution, >= 0, in x's dtype
    (:func:`upsample` enlarges them to the image's size).
    """
    layers = net.layers[:-1] if isinstance(net.layers[-1], Softmax) else net.layers
    x = net._check_input(x)
    k = _feature_layer(layers, layer_name)
    out = x
    for i, layer in enumerate(layers):       # forward, keeping A = layer k's output
        out = layer.forward(out, training=False)
        if i == k:
            feature_maps = out
    target = np.broadcast_to(np.asarray(target, dtype=np.intp), (len(x),))
    dout = F.one_hot(target, out.shape[-1], dtype=out.dtype)   # d y_t / d logits
    for layer in reversed(layers[k + 1:]):   # backward, down to A only
        dout = layer.backward(dout)
    alpha = dout.mean(axis=(1, 2))                              # (N, C)
    cam = np.einsum("nhwc,nc->nhw", feature_maps, alpha)
    return np.maximum(cam, 0).astype(feature_maps.dtype, copy=False)


def _bilinear_weights(n_in: int, n_out: int):
    """For each output position: the two input positions it falls between and the
    weight of the second. Pixel centres line up (half-pixel centres, as
    ``tf.image.resize(method="bilinear")`` and OpenCV): output i sits at input
    coordinate (i + 0.5) * n_in / n_out - 0.5, clamped to the edge pixels."""
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(np.intp)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, src - lo


def upsample(maps, size=IMAGE_SHAPE) -> np.ndarray:
    """Bilinear interpolation of maps (N, H, W) to (N, *size), to lay a Grad-CAM
    map over the image it came from. Interpolates along rows, then columns; the
    values stay within the input's range (so a map stays >= 0).

    Inputs: maps (N, H, W); size (H_out, W_out). Returns (N, H_out, W_out).
    """
    maps = np.asarray(maps)
    lo, hi, t = _bilinear_weights(maps.shape[1], size[0])
    t = t.astype(maps.dtype)[None, :, None]
    rows = maps[:, lo] * (1 - t) + maps[:, hi] * t                  # (N, H_out, W)
    lo, hi, t = _bilinear_weights(maps.shape[2], size[1])
    t = t.astype(maps.dtype)[None, None, :]
    return rows[:, :, lo] * (1 - t) + rows[:, :, hi] * t            # (N, H_out, W_out)


def layer_output(net: Sequential, x, layer_name: str, batch_size: int = 500) -> np.ndarray:
    """The output of layer ``layer_name`` for images x (N, *net.input_shape), in
    inference mode, computed ``batch_size`` images at a time (the early layers'
    maps of 10,000 digits at once would take gigabytes)."""
    names = [layer.name for layer in net.layers]
    if layer_name not in names:
        raise ValueError(f"no layer named {layer_name!r}; layers: {', '.join(names)}")
    upto = net.layers[:names.index(layer_name) + 1]
    x = net._check_input(x)
    outs = []
    for i in range(0, len(x), batch_size):
        out = x[i:i + batch_size]
        for layer in upto:
            out = layer.forward(out, training=False)
        outs.append(out)
    return np.concatenate(outs) if outs else np.zeros((0, *upto[-1].output_shape))


def top_patches(net: Sequential, x, layer_name: str, channel: int, k: int = 9):
    """The input patches that excite one feature map most: for every image its
    strongest unit of ``channel`` in layer ``layer_name``, then the ``k`` images
    whose strongest is largest (one patch per image, so one digit cannot fill the
    list). Each patch is that unit's receptive field
    (:func:`mnist_cnn.architectures.receptive_box`), cut from the image.

    Returns a list of k dicts: ``image`` (index into x), ``unit`` (row, col),
    ``value`` (the activation), ``box`` (top, left, bottom, right) and ``patch``
    (the pixels, (bottom - top, right - left)); the strongest first.
    """
    from mnist_cnn.architectures import receptive_box

    maps = layer_output(net, x, layer_name)[..., channel]        # (N, H, W)
    flat = maps.reshape(len(maps), -1)
    best = flat.argmax(axis=1)                                    # each image's strongest
    values = flat[np.arange(len(flat)), best]
    result = []
    for i in np.argsort(-values, kind="stable")[:k]:
        row, col = np.unravel_index(best[i], maps.shape[1:])
        top, left, bottom, right = receptive_box(net, layer_name, int(row), int(col))
        result.append({"image": int(i), "unit": (int(row), int(col)),
                       "value": float(values[i]), "box": (top, left, bottom, right),
                       "patch": np.asarray(x)[i, top:bottom, left:right, 0]})
    return result


def pca(features, k: int = 2):
    """Principal component analysis of ``features`` (N, D) by the SVD.

    With X the centred features (each column minus its mean), X = U S V^T; the
    rows of V^T are the directions of largest variance, in order, and X V_k = U_k S_k
    are the coordinates of every row along the first k of them. The variance along
    direction i is S_i^2 / (N - 1).

    Returns (scores (N, k), components (k, D), explained (k,): the fraction of the
    total variance along each component). float64 throughout.
    """
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or len(x) < 2 or not 1 <= k <= min(x.shape):
        raise ValueError(f"pca needs features (N >= 2, D) and 1 <= k <= min(N, D), got "
                         f"shape {x.shape}, k={k}")
    centred = x - x.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    explained = s ** 2 / (s ** 2).sum()
    return u[:, :k] * s[:k], vt[:k], explained[:k]


def dream(net: Sequential, target: int, steps: int = 200, lr: float = 0.1,
          l2: float = 0.01, jitter: int = 1, seed: int = 0, start=None):
    """Activation maximisation (Erhan et al., 2009; Simonyan et al., 2014): an
    image x in [0, 1] found by gradient ascent on y_t(x) - l2 * ||x||^2, with y_t
    the logit of class ``target``, from ``start`` (default dim noise drawn from
    ``seed``). Each step adds ``lr`` times the gradient (:func:`input_gradient`)
    and clips to [0, 1]. The L2 term keeps only pixels that pay for themselves;
    ``jitter``: each gradient is taken on the image moved by up to that many
    pixels (and moved back), so no pattern tied to one exact position wins.

    Returns (image (28, 28, 1) float32, the target's logit after each step).
    """
    from mnist_cnn.data import shift_images

    rng = np.random.default_rng(seed)
    shape = net.input_shape
    x = (rng.uniform(0, 0.1, (1, *shape)) if start is None
         else np.asarray(start, np.float64).reshape(1, *shape))
    x = x.astype(np.float32)
    history = []
    for _ in range(steps):
        dy, dx = rng.integers(-jitter, jitter + 1, 2) if jitter else (0, 0)
        moved = shift_images(x, int(dy), int(dx))
        grad = shift_images(input_gradient(net, moved, [target], score="class"),
                            -int(dy), -int(dx))
        x = np.clip(x + lr * (grad - 2 * l2 * x), 0.0, 1.0).astype(np.float32)
        history.append(float(net.forward(x)[0, target]))
    return x[0], np.array(history)
