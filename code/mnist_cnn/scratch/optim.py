"""Optimisers with explicit state, updating parameter arrays in place.

Usage::

    opt = Adam(lr=1e-3)
    loss, _ = net.loss_and_backward(x, y)
    opt.step(net.parameters(), net.gradients())

``opt.state`` holds everything the optimiser remembers between steps (velocity,
moment estimates, step count) as plain arrays, so it can be inspected in a
chapter. The learning rate is a plain attribute ``opt.lr`` that a schedule may
change between epochs: a schedule is a function ``t -> lr`` (``fit`` calls it
with the epoch, counted from 0), see :func:`exponential_decay`,
:func:`step_decay`, :func:`cosine_decay` and :func:`warmup_cosine_decay`.

Each optimiser and schedule computes what Keras 3's namesake does
(``tests/test_optim_keras.py``), with two stated exceptions: ``weight_decay`` in
``SGD`` and ``Adam`` is the classic L2 term added to the gradient, while Keras'
``weight_decay`` (in every optimiser) is the decoupled decay of :class:`AdamW`; and
``Adam``/``AdamW`` add epsilon where the paper does unless ``eps_form="keras"``,
which matters only for gradients within a few orders of magnitude of epsilon.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "run_steps",
           "exponential_decay", "step_decay", "cosine_decay", "warmup_cosine_decay"]


def _require(ok: bool, need: str, **got) -> None:
    """Raise ValueError saying what is needed and what was given, unless ``ok``."""
    if not ok:
        values = ", ".join(f"{name}={value!r}" for name, value in got.items())
        raise ValueError(f"need {need}, got {values}")


class SGD:
    """Stochastic gradient descent with momentum (heavy-ball or Nesterov) and L2
    weight decay.

        g <- g + weight_decay * p      (the gradient of (weight_decay/2) * ||p||^2)
        v <- momentum * v - lr * g
        p <- p + v                                    (heavy ball)
        p <- p + momentum * v - lr * g                (nesterov=True)

    Nesterov is Keras' form. The textbook form (Sutskever et al., 2013) takes the
    gradient at a look-ahead point: v <- momentum * v - lr * grad(p + momentum * v),
    p <- p + v. Write q = p + momentum * v for that point and the update of q is the
    line above, with the gradient taken at q itself: the weights stored here are
    the textbook's look-ahead point, so no second gradient evaluation is needed.

    Inputs: lr > 0 (step size), momentum in [0, 1) (0 = plain SGD),
    weight_decay >= 0, nesterov (bool).
    """

    def __init__(self, lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 0.0, nesterov: bool = False):
        _require(lr > 0 and 0 <= momentum < 1 and weight_decay >= 0,
                 "lr > 0, 0 <= momentum < 1 and weight_decay >= 0",
                 lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.nesterov = bool(nesterov)
        self.state: dict = {"step": 0, "velocity": None}

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        if self.state["velocity"] is None:
            self.state["velocity"] = [np.zeros_like(p) for p in params]
        for p, g, v in zip(params, grads, self.state["velocity"], strict=True):
            if self.weight_decay:
                g = g + self.weight_decay * p
            v[...] = self.momentum * v - self.lr * g
            if self.nesterov:
                p += self.momentum * v - self.lr * g
            else:
                p += v
        self.state["step"] += 1


class Adagrad:
    """Adagrad (Duchi et al., 2011): each weight's step divided by the root of the
    sum of its squared gradients so far.

        s <- s + g^2                          (s starts at initial_accumulator)
        p <- p - lr * g / sqrt(s + eps)

    Keras' form and defaults: lr 1e-3, initial_accumulator 0.1, eps 1e-7 inside
    the square root. s only grows, so every weight's step only shrinks.
    """

    def __init__(self, lr: float = 1e-3, initial_accumulator: float = 0.1,
                 eps: float = 1e-7):
        _require(lr > 0 and initial_accumulator >= 0 and eps > 0,
                 "lr > 0, initial_accumulator >= 0 and eps > 0",
                 lr=lr, initial_accumulator=initial_accumulator, eps=eps)
        self.lr, self.eps = float(lr), float(eps)
        self.initial_accumulator = float(initial_accumulator)
        self.state: dict = {"step": 0, "s": None}

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        st = self.state
        if st["s"] is None:
            st["s"] = [np.full_like(p, self.initial_accumulator) for p in params]
        for p, g, s in zip(params, grads, st["s"], strict=True):
            s += g**2
            p -= self.lr * g / np.sqrt(s + self.eps)
        st["step"] += 1


class RMSprop:
    """RMSprop (Hinton, 2012): Adagrad with a running mean instead of a sum, so old
    gradients are forgotten and the step does not shrink to zero.

        s <- rho * s + (1 - rho) * g^2        (s starts at 0)
        p <- p - lr * g / sqrt(s + eps)
        with momentum > 0, the second line becomes (as SGD's momentum)
        v <- momentum * v - lr * g / sqrt(s + eps),   p <- p + v

    Keras' form and defaults: lr 1e-3, rho 0.9, momentum 0, eps 1e-7 inside the
    square root (Keras' ``centered=True`` variant is not here).
    """

    def __init__(self, lr: float = 1e-3, rho: float = 0.9, momentum: float = 0.0,
                 eps: float = 1e-7):
        _require(lr > 0 and 0 <= rho < 1 and 0 <= momentum < 1 and eps > 0,
                 "lr > 0, 0 <= rho < 1, 0 <= momentum < 1 and eps > 0",
                 lr=lr, rho=rho, momentum=momentum, eps=eps)
        self.lr, self.rho = float(lr), float(rho)
        self.momentum, self.eps = float(momentum), float(eps)
        self.state: dict = {"step": 0, "s": None, "velocity": None}

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        st, rho = self.state, self.rho
        if st["s"] is None:
            st["s"] = [np.zeros_like(p) for p in params]
            st["velocity"] = [np.zeros_like(p) for p in params]
        for p, g, s, v in zip(params, grads, st["s"], st["velocity"], strict=True):
            s[...] = rho * s + (1 - rho) * g**2
            scaled = self.lr * g / np.sqrt(s + self.eps)
            if self.momentum:
                v[...] = self.momentum * v - scaled
                p += v
            else:
                p -= scaled
        st["step"] += 1


class Adam:
    """Adam (Kingma & Ba, 2015): per-parameter steps scaled by running moment
    estimates.

        m <- b1 * m + (1 - b1) * g          (mean of the gradient)
        v <- b2 * v + (1 - b2) * g^2        (mean of its square)
        p <- p - lr * m_hat / (sqrt(v_hat) + eps),
             m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)   (bias correction)

    Defaults are Keras' (lr 1e-3, b1 0.9, b2 0.999, eps 1e-7). With
    weight_decay > 0 the gradient first gets the L2 term, as in SGD (the classic
    coupled form; :class:`AdamW` decouples it):

        g <- g + weight_decay * p,  then the update above

    ``eps_form``: "paper" adds eps to sqrt(v_hat), as above (Kingma & Ba's
    Algorithm 1); "keras" adds it to sqrt(v) before the bias correction, as Keras
    does (the eps-hat form at the end of the paper's section 2), which is the
    update above with eps replaced by eps / sqrt(1 - b2^t). The two part only
    where |g| is within a few orders of magnitude of eps: at the first step their
    relative difference is about 30 eps / |g|.
    """

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-7, weight_decay: float = 0.0, eps_form: str = "paper"):
        _require(lr > 0 and 0 <= beta1 < 1 and 0 <= beta2 < 1 and eps > 0
                 and weight_decay >= 0 and eps_form in ("paper", "keras"),
                 "lr > 0, 0 <= beta1 < 1, 0 <= beta2 < 1, eps > 0, "
                 "weight_decay >= 0 and eps_form 'paper' or 'keras'", lr=lr,
                 beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
                 eps_form=eps_form)
        self.lr, self.beta1 = float(lr), float(beta1)
        self.beta2, self.eps = float(beta2), float(eps)
        self.weight_decay = float(weight_decay)
        self.eps_form = eps_form
        self.state: dict = {"step": 0, "m": None, "v": None}

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        st = self.state
        if st["m"] is None:
            st["m"] = [np.zeros_like(p) for p in params]
            st["v"] = [np.zeros_like(p) for p in params]
        st["step"] += 1
        t, b1, b2 = st["step"], self.beta1, self.beta2
        # Both bias corrections folded into the step size and epsilon: exactly the
        # update of the docstring (Algorithm 1). Keras 3 folds them into the step
        # size only and adds eps to sqrt(v) unscaled (eps_form="keras"); that is
        # the docstring's update with eps replaced by eps / sqrt(1 - b2^t): 31.6
        # eps at step 1, 1.26 eps at step 1000, then -> eps.
        # Python floats, so float32 weights stay float32.
        lr_t = self.lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        eps_t = self.eps * (math.sqrt(1 - b2**t) if self.eps_form == "paper" else 1.0)
        for p, g, m, v in zip(params, grads, st["m"], st["v"], strict=True):
            if self.weight_decay:
                g = g + self.weight_decay * p
            m[...] = b1 * m + (1 - b1) * g
            v[...] = b2 * v + (1 - b2) * g**2
            p -= lr_t * m / (np.sqrt(v) + eps_t)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as Keras' AdamW
    (with ``eps_form="keras"`` also where gradients are as small as epsilon).

    With the same lambda = weight_decay, the two ways to decay weights in Adam:

        AdamW:       p <- p - lr * lambda * p,  then Adam's update with g
        L2 in Adam:  Adam's update with g + lambda * p    (Adam(weight_decay=...))

    In AdamW every weight shrinks by the same fraction lr * lambda per step. In
    the coupled form the decay term goes through m_hat / sqrt(v_hat) like the
    gradient: it is rescaled per weight, so weights with large gradients are
    barely decayed, and with no other gradient the step is about lr, whatever
    lambda. Keras' default lambda is 0.004. Keras shrinks before Adam's update,
    as here (Adam's update does not depend on p, so only rounding could tell).
    ``self.weight_decay``, Adam's coupled term, stays 0.
    """

    def __init__(self, lr: float = 1e-3, weight_decay: float = 0.004,
                 beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-7,
                 eps_form: str = "paper"):
        super().__init__(lr, beta1, beta2, eps, eps_form=eps_form)
        _require(weight_decay >= 0, "weight_decay >= 0", weight_decay=weight_decay)
        self.decoupled_weight_decay = float(weight_decay)

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        for p in params:
            p -= p * self.decoupled_weight_decay * self.lr
        super().step(params, grads)


def run_steps(optimizer, params, grads) -> list[np.ndarray]:
    """Copies of ``params`` after ``optimizer`` took one step per entry of ``grads``
    (a list of gradient lists, one array per parameter): how an optimiser is
    compared with another on the same fixed sequence of gradients."""
    params = [np.array(p, copy=True) for p in params]
    for g in grads:
        optimizer.step(params, g)
    return params


# --------------------------------------------------------------------- schedules
# A schedule maps a count t (fit passes the epoch, from 0) to a learning rate.

def exponential_decay(lr0: float, rate: float) -> Callable[[int], float]:
    """Schedule: lr(epoch) = lr0 * rate ** epoch (epoch counted from 0)."""
    return lambda epoch: lr0 * rate**epoch


def step_decay(lr0: float, factor: float, every: int) -> Callable[[int], float]:
    """Schedule: lr(t) = lr0 * factor ** (t // every), a drop by ``factor`` every
    ``every`` steps. Keras: ``ExponentialDecay(lr0, every, factor, staircase=True)``.
    """
    _require(lr0 > 0 and factor > 0 and int(every) == every >= 1,
             "lr0 > 0, factor > 0 and a whole number every >= 1",
             lr0=lr0, factor=factor, every=every)
    return lambda t: lr0 * factor ** (t // every)


def cosine_decay(lr0: float, decay_steps: int, alpha: float = 0.0
                 ) -> Callable[[int], float]:
    """Schedule: half a cosine from lr0 at t = 0 down to alpha * lr0 at
    t = decay_steps, then flat.

        lr(t) = lr0 * (alpha + (1 - alpha) * (1 + cos(pi * t' / decay_steps)) / 2),
        t' = min(t, decay_steps)

    Keras: ``CosineDecay(lr0, decay_steps, alpha)``. The production Keras model
    steps it once per epoch to reach its floor in the last epoch:
    ``cosine_decay(LR, EPOCHS - 1, LR_FINAL_FRACTION)`` (``keras_model.cosine_lr``).
    """
    _require(lr0 > 0 and decay_steps > 0 and 0 <= alpha <= 1,
             "lr0 > 0, decay_steps > 0 and 0 <= alpha <= 1",
             lr0=lr0, decay_steps=decay_steps, alpha=alpha)

    def lr(t: int) -> float:
        done = min(t, decay_steps) / decay_steps
        return lr0 * (alpha + (1 - alpha) * 0.5 * (1 + math.cos(math.pi * done)))

    return lr


def warmup_cosine_decay(lr0: float, warmup_steps: int, decay_steps: int,
                        alpha: float = 0.0, initial_lr: float = 0.0
                        ) -> Callable[[int], float]:
    """Schedule: a straight line from initial_lr at t = 0 up to lr0 at
    t = warmup_steps, then :func:`cosine_decay` (lr0, decay_steps, alpha).

    Large steps at the start, while the weights are random and Adam's moment
    estimates rest on few gradients, can throw training off; the warm-up avoids
    them. Keras: ``CosineDecay(initial_lr, decay_steps, alpha,
    warmup_target=lr0, warmup_steps=warmup_steps)``.
    """
    _require(warmup_steps >= 0 and 0 <= initial_lr <= lr0,
             "warmup_steps >= 0 and 0 <= initial_lr <= lr0",
             warmup_steps=warmup_steps, initial_lr=initial_lr, lr0=lr0)
    cosine = cosine_decay(lr0, decay_steps, alpha)

    def lr(t: int) -> float:
        if t < warmup_steps:
            return initial_lr + (lr0 - initial_lr) * t / warmup_steps
        return cosine(t - warmup_steps)

    return lr
