"""A scratch normalisation layer against its Keras twin (batch and layer norm)."""

from __future__ import annotations

from mnist_cnn.backend import import_tensorflow
from mnist_cnn.numerics import assert_close


def assert_matches_keras(ours, theirs, x, dout, training: bool, what: str):
    """Forward output, dL/dx, dL/dgamma and dL/dbeta of ``ours`` equal those of the
    Keras layer ``theirs`` (same weights) for the loss sum(out * dout), in one mode.
    Each call runs each layer forward once (a BN layer's running statistics move
    once, alike). Returns our output and dL/dx."""
    tf = import_tensorflow()
    tx = tf.Variable(x)
    with tf.GradientTape() as tape:
        t_out = theirs(tx, training=training)
        scalar = tf.reduce_sum(t_out * dout)
    t_dx, t_dgamma, t_dbeta = tape.gradient(scalar, [tx, theirs.gamma, theirs.beta])
    out = ours.forward(x, training=training)
    dx = ours.backward(dout)
    assert_close(out, t_out.numpy(), f"{what} forward")
    assert_close(dx, t_dx.numpy(), f"{what} dx")
    assert_close(ours.grads["gamma"], t_dgamma.numpy(), f"{what} dgamma")
    assert_close(ours.grads["beta"], t_dbeta.numpy(), f"{what} dbeta")
    return out, dx
