"""Optimisers with explicit state, updating parameter arrays in place.

Usage::

    opt = Adam(lr=1e-3)
    loss, _ = net.loss_and_backward(x, y)
    opt.step(net.parameters(), net.gradients())

``opt.state`` holds everything the optimiser remembers between steps (velocity,
moment estimates, step count) as plain arrays, so it can be inspected in a
chapter. The learning rate is a plain attribute ``opt.lr`` that a schedule may
change between epochs (see :func:`exponential_decay`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["SGD", "Adam", "exponential_decay"]


class SGD:
    """Stochastic gradient descent with (heavy-ball) momentum and L2 weight decay.

        g <- g + weight_decay * p          (the gradient of (weight_decay / 2) * ||p||^2)
        v <- momentum * v - lr * g
        p <- p + v

    Inputs: lr (step size), momentum in [0, 1) (0 = plain SGD), weight_decay >= 0.
    """

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0):
        if lr <= 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(f"need lr > 0, 0 <= momentum < 1 and weight_decay >= 0, got "
                             f"lr={lr}, momentum={momentum}, weight_decay={weight_decay}")
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.state: dict = {"step": 0, "velocity": None}

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        if self.state["velocity"] is None:
            self.state["velocity"] = [np.zeros_like(p) for p in params]
        for p, g, v in zip(params, grads, self.state["velocity"], strict=True):
            if self.weight_decay:
                g = g + self.weight_decay * p
            v[...] = self.momentum * v - self.lr * g
            p += v
        self.state["step"] += 1


class Adam:
    """Adam (Kingma & Ba, 2015): per-parameter steps scaled by running moment estimates.

        m <- b1 * m + (1 - b1) * g          (mean of the gradient)
        v <- b2 * v + (1 - b2) * g^2        (mean of its square)
        p <- p - lr * m_hat / (sqrt(v_hat) + eps),
             m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)   (bias correction)

    Defaults are Keras' (lr 1e-3, b1 0.9, b2 0.999, eps 1e-7). With weight_decay > 0
    the gradient first gets the L2 term, g <- g + weight_decay * p, as in SGD (the
    classic coupled form; AdamW instead subtracts lr * weight_decay * p from p).
    """

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-7, weight_decay: float = 0.0):
        if lr <= 0 or not (0 <= beta1 < 1 and 0 <= beta2 < 1) or eps <= 0 or weight_decay < 0:
            raise ValueError(f"bad Adam hyperparameters lr={lr}, beta1={beta1}, "
                             f"beta2={beta2}, eps={eps}, weight_decay={weight_decay}")
        self.lr, self.beta1 = float(lr), float(beta1)
        self.beta2, self.eps = float(beta2), float(eps)
        self.weight_decay = float(weight_decay)
        self.state: dict = {"step": 0, "m": None, "v": None}

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        st = self.state
        if st["m"] is None:
            st["m"] = [np.zeros_like(p) for p in params]
            st["v"] = [np.zeros_like(p) for p in params]
        st["step"] += 1
        t, b1, b2 = st["step"], self.beta1, self.beta2
        # Both bias corrections folded into the step size and epsilon, the form
        # Kingma & Ba give at the end of their section 2: exactly the update of
        # the docstring. Keras 3 folds them into the step size only and adds eps
        # to sqrt(v) unscaled; that is the docstring's update with eps replaced
        # by eps / sqrt(1 - b2^t): 31.6 eps at step 1, 1.26 eps at step 1000,
        # then -> eps. It matters only where sqrt(v_hat) is as small as eps.
        # Python floats, so float32 weights stay float32.
        lr_t = self.lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        eps_t = self.eps * math.sqrt(1 - b2**t)
        for p, g, m, v in zip(params, grads, st["m"], st["v"], strict=True):
            if self.weight_decay:
                g = g + self.weight_decay * p
            m[...] = b1 * m + (1 - b1) * g
            v[...] = b2 * v + (1 - b2) * g**2
            p -= lr_t * m / (np.sqrt(v) + eps_t)


def exponential_decay(lr0: float, rate: float) -> Callable[[int], float]:
    """Schedule: lr(epoch) = lr0 * rate ** epoch (epoch counted from 0)."""
    return lambda epoch: lr0 * rate**epoch
