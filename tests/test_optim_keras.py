"""The optimisers and learning-rate schedules of mnist_cnn.scratch.optim compute
what Keras 3's optimisers and schedules of the same names compute.

Each optimiser runs 100 steps on the same float32 parameters (several shapes) and
the same seeded sequence of random gradients as its Keras twin, driven through
``optimizer.apply_gradients`` on ``keras.Variable``s; the weights must then be
equal by the course's rule (:func:`mnist_cnn.numerics.assert_close`: relative to
the largest weight, within 1000 units of float32 rounding).

Why 100 float32 steps stay within that on any CPU: the gradients are a fixed
sequence, not computed from the weights, so a rounding difference never changes
what later steps do; it only adds up. Each step rounds a handful of elementwise
operations (no long sums whose order a kernel could change), about one unit of
rounding of the largest weight per step in each library, so 100 steps can differ
by at most a few hundred units and in practice (signs at random) by tens. The
one difference that is not rounding, Adam's epsilon, is bounded in float64 first.
"""

from __future__ import annotations

import numpy as np
import pytest
from mnist_cnn.backend import import_keras, import_tensorflow
from mnist_cnn.bridge import keras_run_steps
from mnist_cnn.numerics import assert_close, max_rel_error, tolerance
from mnist_cnn.scratch.optim import (
    SGD,
    Adagrad,
    Adam,
    AdamW,
    RMSprop,
    cosine_decay,
    exponential_decay,
    run_steps,
    step_decay,
    warmup_cosine_decay,
)

pytestmark = pytest.mark.numerics
tf, keras = import_tensorflow(), import_keras()

STEPS = 100
SHAPES = [(3, 3, 1, 4), (4,), (10, 7)]       # a conv kernel, a bias, a dense kernel
TOL32 = tolerance(np.float32)


def _problem(seed: int = 0, dtype=np.float32):
    """Start weights and STEPS lists of gradients, standard normal, in ``dtype``."""
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(STEPS)]
    return params, grads


_run_ours, _run_keras = run_steps, keras_run_steps


K = keras.optimizers
TWINS = {   # name: (ours, Keras'), the same hyperparameters
    "SGD": (lambda: SGD(0.01, momentum=0.0), lambda: K.SGD(0.01)),
    "SGD momentum": (lambda: SGD(0.01, momentum=0.9), lambda: K.SGD(0.01, momentum=0.9)),
    "SGD Nesterov": (lambda: SGD(0.01, momentum=0.9, nesterov=True),
                     lambda: K.SGD(0.01, momentum=0.9, nesterov=True)),
    "Adagrad": (lambda: Adagrad(0.1), lambda: K.Adagrad(0.1)),
    "RMSprop": (lambda: RMSprop(0.01), lambda: K.RMSprop(0.01)),
    "RMSprop momentum": (lambda: RMSprop(0.01, rho=0.8, momentum=0.5),
                         lambda: K.RMSprop(0.01, rho=0.8, momentum=0.5)),
    "Adam": (lambda: Adam(0.01), lambda: K.Adam(0.01)),
    "AdamW": (lambda: AdamW(0.01, weight_decay=0.5), lambda: K.AdamW(0.01, weight_decay=0.5)),
    # Keras' weight_decay is decoupled in every optimiser: Adam(weight_decay=) is AdamW.
    "AdamW as Keras Adam(weight_decay)": (lambda: AdamW(0.01, weight_decay=0.5),
                                          lambda: K.Adam(0.01, weight_decay=0.5)),
    # For plain SGD the coupled L2 term and Keras' decoupled decay are the same step,
    # p - lr * (g + wd * p) = p - lr * wd * p - lr * g, rounded differently.
    "SGD weight decay": (lambda: SGD(0.01, momentum=0.0, weight_decay=0.5),
                         lambda: K.SGD(0.01, weight_decay=0.5)),
}


@pytest.mark.parametrize("name", TWINS)
def test_each_optimiser_equals_its_keras_twin_over_100_steps(name):
    ours, theirs = TWINS[name]
    params, grads = _problem()
    mine, keras_weights = _run_ours(ours(), params, grads), _run_keras(theirs(), params, grads)
    for p0, a, b in zip(params, mine, keras_weights, strict=True):
        assert a.dtype == np.float32
        assert max_rel_error(a, p0) > 100 * TOL32          # the weights did move
        assert_close(a, b, f"{name} vs Keras, {STEPS} steps, shape {p0.shape}")


def _adam64(params, grads, lr, b1=0.9, b2=0.999, eps=1e-7, keras_eps=False, wd=0.0):
    """Adam from its equations in float64: Kingma & Ba's form (this library's), or
    Keras' (eps added to sqrt(v) before the bias correction), with optional L2."""
    params = [p.astype(np.float64) for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t, gs in enumerate(grads, start=1):
        for i, g in enumerate(gs):
            g = g + wd * params[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g**2
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            e = eps / np.sqrt(1 - b2**t) if keras_eps else eps
            params[i] = params[i] - lr * m_hat / (np.sqrt(v_hat) + e)
    return params


def test_adams_epsilon_is_not_keras_but_the_difference_is_far_below_the_tolerance():
    """Adam here adds eps to sqrt(v_hat) (Kingma & Ba); Keras adds it to sqrt(v), that
    is eps / sqrt(1 - b2^t) to sqrt(v_hat). Computed exactly (float64) on the test's
    gradients, the two differ by far less than the float32 tolerance (about 20 units
    of rounding), so the float32 comparison above passes on these gradients; the
    small-gradient test below shows where the two forms part."""
    params, grads = _problem()
    ours = _adam64(params, grads, 0.01)
    theirs = _adam64(params, grads, 0.01, keras_eps=True)
    for a, b in zip(ours, theirs, strict=True):
        assert 0 < max_rel_error(a, b) < TOL32 / 10


@pytest.mark.parametrize("scale", [1e-2, 1e-3])
def test_on_small_gradients_only_the_keras_eps_form_equals_keras(scale):
    """Where |g| comes within a few orders of magnitude of eps, the two placements
    of epsilon part: the library's default (the paper's) differs from
    Keras by more than the float32 rule, by as much as the float64 equations of
    the two forms say; eps_form="keras" is equal to Keras."""
    params, grads = _problem()
    grads = [[g * np.float32(scale) for g in step] for step in grads]
    keras_weights = _run_keras(K.Adam(0.01), params, grads)
    paper = _run_ours(Adam(0.01), params, grads)
    keras_form = _run_ours(Adam(0.01, eps_form="keras"), params, grads)
    adamw = _run_ours(AdamW(0.01, weight_decay=0.5, eps_form="keras"), params, grads)
    for a, b in zip(adamw, _run_keras(K.AdamW(0.01, weight_decay=0.5), params, grads),
                    strict=True):
        assert_close(a, b, f"AdamW(eps_form='keras') vs Keras, gradients x {scale}")
    exact = max(max_rel_error(a, b) for a, b in zip(
        _adam64(params, grads, 0.01), _adam64(params, grads, 0.01, keras_eps=True),
        strict=True))
    seen = max(max_rel_error(a, b) for a, b in zip(paper, keras_weights, strict=True))
    assert seen > TOL32 and abs(seen - exact) < TOL32      # the difference is the form
    for a, b in zip(keras_form, keras_weights, strict=True):
        assert_close(a, b, f"Adam(eps_form='keras') vs Keras, gradients x {scale}")


def test_adam_with_coupled_weight_decay_equals_its_equations():
    """Keras has no coupled L2 option, so Adam(weight_decay=) is held to its
    equations in float64 (Adam on g + weight_decay * p), over the same 100 steps."""
    params, grads = _problem()
    mine = _run_ours(Adam(0.01, weight_decay=0.5), params, grads)
    want = _adam64(params, grads, 0.01, wd=0.5)
    for a, b in zip(mine, want, strict=True):
        assert_close(a, b, "Adam + L2 vs its equations")


def test_nesterov_holds_the_textbook_look_ahead_point():
    """Textbook Nesterov (v <- mu v - lr grad(p + mu v), p <- p + v) on a quadratic,
    in float64: the weights SGD(nesterov=True) holds are its look-ahead point p + mu v."""
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.5, 2, 6), rng.standard_normal(6)

    def grad(p):                      # of sum(a * p^2 / 2 + b * p)
        return a * p + b

    lr, mu = 0.1, 0.9
    p, v = rng.standard_normal(6), np.zeros(6)
    q = [p.copy()]                   # v = 0 at the start: the look-ahead point is p
    opt = SGD(lr, momentum=mu, nesterov=True)
    for _ in range(50):
        v = mu * v - lr * grad(p + mu * v)
        p = p + v
        opt.step(q, [grad(q[0])])
    assert_close(q[0], p + mu * v, "Nesterov, Keras' form vs the textbook's")
    assert max_rel_error(p, p + mu * v) > 1e-6           # the two points do differ


def test_adamw_and_l2_in_adam_decay_weights_differently():
    """The same lambda, two meanings. With no gradient, AdamW shrinks every weight by
    the fraction lr * lambda per step; coupled L2 in Adam normalises its own decay
    term (m_hat / sqrt(v_hat) of g = lambda * p is about sign(p)), so every weight
    moves by about lr per step, whatever lambda and |p|. (float64: the point is the
    equations, and float32 would lose the small moves in the weights' last bits.)"""
    lr, n = 1e-3, 10
    p0 = np.array([1.0, -1.5, 2.0, -4.0])

    def run(opt, grads):
        p = [p0.copy()]
        for g in grads:
            opt.step(p, [g])
        return p[0]

    zero = [np.zeros_like(p0)] * n
    for lam in (1e-2, 1e-4):
        assert_close(run(AdamW(lr, lam), zero), p0 * (1 - lr * lam) ** n, f"AdamW, {lam}")
        decoupled = np.abs(p0) * (1 - (1 - lr * lam) ** n)     # how far towards 0
        coupled = (p0 - run(Adam(lr, weight_decay=lam), zero)) * np.sign(p0)
        # |p| >= 1 changes by at most n * lr = 1 % in the n steps, and eps / (lam |p|)
        # is at most 1e-3, so m_hat / sqrt(v_hat) is within 2 % of 1: a bound from the
        # equations, not from this machine.
        assert np.all(np.abs(coupled / (n * lr) - 1) < 0.02), coupled
        # What a student sees: coupled L2 moves a weight 1 / (lambda |p|) times as far
        # as AdamW does: 100 times for lambda = 1e-2 and |p| = 1, 10,000 for 1e-4.
        assert_close(coupled / decoupled, 1 / (lam * np.abs(p0)), "L2 over AdamW decay",
                     rtol=0.03)

    # With gradients, coupled decay is divided by the gradients' size: two weights of
    # 1, one with gradients of +-1e-3 and one with +-1. AdamW decays both alike (by
    # n lr lambda = 1e-3); L2 in Adam moves the first by about n lr = 0.1, ~100 times
    # as far as the second (lambda p / |g| = 1e-2 of each step lr: also ~1e-3).
    rng = np.random.default_rng(2)
    p0 = np.ones(2)
    grads = [rng.choice([-1, 1], 2) * [1e-3, 1.0] for _ in range(100)]
    plain = run(Adam(lr), grads)
    w_effect = plain - run(AdamW(lr, 1e-2), grads)
    l2_effect = plain - run(Adam(lr, weight_decay=1e-2), grads)
    assert abs(w_effect[0] / w_effect[1] - 1) < 0.05
    assert l2_effect[0] > 30 * l2_effect[1] > 0
    print(f"AdamW decay {w_effect}, L2-in-Adam decay {l2_effect}")


# ----------------------------------------------------------------------- schedules
S = keras.optimizers.schedules


def _both(ours, theirs, steps):
    mine = np.array([ours(t) for t in steps], np.float64)
    keras_values = np.array([float(theirs(t)) for t in steps], np.float32)
    assert_close(mine, keras_values, f"{theirs.__class__.__name__}, steps {steps}")
    return mine


def test_cosine_decay_equals_keras_and_the_production_models_schedule():
    from mnist_cnn import keras_model as km

    ours = cosine_decay(km.LR, km.EPOCHS - 1, km.LR_FINAL_FRACTION)
    lrs = _both(ours, S.CosineDecay(km.LR, km.EPOCHS - 1, alpha=km.LR_FINAL_FRACTION),
                range(km.EPOCHS + 5))                         # flat after decay_steps
    assert lrs[0] == km.LR and lrs[-1] == pytest.approx(km.LR * km.LR_FINAL_FRACTION)
    assert_close(lrs[:km.EPOCHS], [km.cosine_lr(e, km.EPOCHS) for e in range(km.EPOCHS)],
                 "cosine_decay vs the Keras model's cosine_lr")
    _both(cosine_decay(0.1, 37), S.CosineDecay(0.1, 37), range(0, 50, 3))


def test_warmup_cosine_decay_equals_keras_cosine_decay_with_warmup():
    _both(warmup_cosine_decay(1e-3, 5, 20, alpha=0.1, initial_lr=1e-5),
          S.CosineDecay(1e-5, 20, alpha=0.1, warmup_target=1e-3, warmup_steps=5), range(30))
    lrs = _both(warmup_cosine_decay(0.01, 10, 90),
                S.CosineDecay(0.0, 90, warmup_target=0.01, warmup_steps=10), range(110))
    assert lrs[0] == 0 and lrs[10] == max(lrs) == 0.01 and lrs[-1] == 0


def test_step_decay_equals_keras_staircase_and_piecewise_constant():
    steps = range(15)
    ours = step_decay(0.1, 0.5, 3)
    _both(ours, S.ExponentialDecay(0.1, 3, 0.5, staircase=True), steps)
    # PiecewiseConstantDecay keeps values[i] up to and including boundaries[i].
    _both(ours, S.PiecewiseConstantDecay([2, 5, 8, 11], [0.1, 0.05, 0.025, 0.0125, 0.00625]),
          steps)
    _both(exponential_decay(0.1, 0.8), S.ExponentialDecay(0.1, 1, 0.8), steps)


def test_fit_sets_the_learning_rate_from_a_schedule_each_epoch(mnist):
    from mnist_cnn.data import prepare_images
    from mnist_cnn.scratch.train import build_model, fit

    x, y = prepare_images(mnist[0][0][:16]), mnist[0][1][:16]
    schedule = warmup_cosine_decay(2e-3, 1, 2)
    history = fit(build_model(seed=0), x, y, epochs=3, batch_size=16,
                  optimizer=AdamW(1.0), schedule=schedule, progress=False)
    assert history["lr"] == [schedule(e) for e in range(3)] == [0.0, 2e-3, 1e-3]


# ------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize(("make", "name"), [
    (lambda: SGD(-0.1), "lr"),
    (lambda: SGD(0.1, momentum=1.0), "momentum"),
    (lambda: SGD(0.1, momentum=-0.5), "momentum"),
    (lambda: SGD(0.1, nesterov=True, weight_decay=-1), "weight_decay"),
    (lambda: Adagrad(0.0), "lr"),
    (lambda: Adagrad(initial_accumulator=-0.1), "initial_accumulator"),
    (lambda: Adagrad(eps=0.0), "eps"),
    (lambda: RMSprop(rho=1.0), "rho"),
    (lambda: RMSprop(momentum=1.5), "momentum"),
    (lambda: RMSprop(float("nan")), "lr"),
    (lambda: Adam(beta1=1.0), "beta1"),
    (lambda: Adam(beta2=-0.1), "beta2"),
    (lambda: AdamW(-1e-3), "lr"),
    (lambda: AdamW(weight_decay=-0.01), "weight_decay"),
    (lambda: Adam(eps_form="Keras"), "eps_form"),
    (lambda: AdamW(eps_form="tf"), "eps_form"),
    (lambda: step_decay(0.1, 0.5, 0), "every"),
    (lambda: step_decay(0.1, 0.5, 2.5), "every"),
    (lambda: step_decay(-0.1, 0.5, 2), "lr0"),
    (lambda: cosine_decay(0.1, 0), "decay_steps"),
    (lambda: cosine_decay(0.1, 10, alpha=1.5), "alpha"),
    (lambda: warmup_cosine_decay(0.1, -1, 10), "warmup_steps"),
    (lambda: warmup_cosine_decay(0.1, 5, 10, initial_lr=0.2), "initial_lr"),
])
def test_bad_arguments_raise_a_clear_value_error(make, name):
    with pytest.raises(ValueError, match=rf"^need .*\b{name}\b.*, got .*\b{name}="):
        make()
