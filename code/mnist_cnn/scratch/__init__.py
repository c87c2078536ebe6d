"""The from-scratch NumPy CNN: operations (:mod:`.functional`), Keras-named layer
classes (:mod:`.layers`), the :class:`Sequential` network, optimisers and the trainer.

Everything in :mod:`mnist_cnn.scratch.functional` is re-exported here.
"""

from mnist_cnn.scratch.functional import *  # noqa: F401,F403
from mnist_cnn.scratch.functional import __all__ as _functional_all

__all__ = list(_functional_all)

from mnist_cnn.scratch.layers import (  # noqa: E402
    AveragePooling2D,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    LayerNormalization,
    MaxPooling2D,
    ReLU,
    Residual,
    Softmax,
    Tanh,
)
from mnist_cnn.scratch.network import Sequential  # noqa: E402

__all__ += ["AveragePooling2D", "BatchNormalization", "Conv2D", "Dense", "Dropout", "Flatten",
            "GlobalAveragePooling2D", "LayerNormalization", "MaxPooling2D", "ReLU", "Residual",
            "Softmax",
            "Sequential", "Tanh"]
