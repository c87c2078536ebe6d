"""Numerical-gradient helpers for the scratch tests (centred differences, float64)."""

from __future__ import annotations

import numpy as np


def numerical_gradient(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """dF/dx by centred differences, (f(x + h) - f(x - h)) / 2h, one element at a time.

    ``f`` takes no arguments and reads ``x`` (which is perturbed in place and restored).
    """
    grad = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        fp = f()
        x[i] = old - h
        fm = f()
        x[i] = old
        grad[i] = (fp - fm) / (2 * h)
        it.iternext()
    return grad


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / max(||a|| + ||b||, 1e-12) over the whole array.

    Norm-wise rather than elementwise: an element that is ~1e-30 analytically
    and exactly 0 numerically is not a 100 % error, while a wrong formula still
    shows up as an error of order 1.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-12))


def check_backward(forward, backward_grads, inputs: dict, rng, h: float = 1e-6) -> dict:
    """Gradient-check an op.

    forward(**inputs) -> out; backward_grads(dout) -> {name: analytic grad}
    (called right after a forward on the unperturbed inputs). The scalar checked
    is sum(out * dout) for a fixed random dout, so every output element matters.
    Returns {name: relative error}.
    """
    out = forward(**inputs)
    dout = rng.standard_normal(out.shape)
    analytic = backward_grads(dout)
    errors = {}
    for name, grad in analytic.items():
        num = numerical_gradient(lambda: float(np.sum(forward(**inputs) * dout)), inputs[name], h)
        errors[name] = rel_error(grad, num)
    return errors
