"""What an MNIST example is, named once for the whole package: a 28x28 grey image
(``IMAGE_SHAPE``, as on disk), fed to the networks with a channel axis
(``INPUT_SHAPE``), and one of ten digits (``NUM_CLASSES``).

A module of its own, importing nothing, so that the from-scratch engine can name
its default input without loading the data pipeline.
"""

IMAGE_SHAPE = (28, 28)
INPUT_SHAPE = (*IMAGE_SHAPE, 1)
NUM_CLASSES = 10

__all__ = ["IMAGE_SHAPE", "INPUT_SHAPE", "NUM_CLASSES"]
