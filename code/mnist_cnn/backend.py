"""TensorFlow and Keras, imported one way: quiet, and with TensorFloat-32 off.

Every chapter, test and command that uses TensorFlow gets it from here::

    from mnist_cnn.backend import import_keras, import_tensorflow
    tf = import_tensorflow()

Two things happen once, the first time:

- **Start-up noise stays out of the reader's output.** TensorFlow's C++ start-up
  lines (``cudart_stub ... Could not find cuda drivers``, ``failed call to
  cuInit``, the CPU-feature notice) are not errors on a machine without a GPU,
  and some of them are written before TensorFlow reads ``TF_CPP_MIN_LOG_LEVEL``.
  The log level defaults to 3 (an explicit setting is kept), and whatever the C++
  side writes to the process' stderr while TensorFlow loads and finds its devices
  is filtered: the start-up log lines are dropped, anything else is passed on.
- **TensorFloat-32 is turned off.** On GPUs since Ampere (Colab's L4, A100, H100)
  TensorFlow multiplies float32 matrices and convolutions with 10-bit mantissas by
  default: a relative error of about 1e-3, far above float32's rounding. The course
  compares TensorFlow with NumPy in float32 (:mod:`mnist_cnn.numerics`), so it asks
  for real float32 everywhere. On a CPU the switch changes nothing.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading

__all__ = ["import_tensorflow", "import_keras", "is_startup_noise"]

_lock = threading.Lock()
_tf = None

# glog/absl-formatted lines ("I0000 00:00:1796403688.499377    2380 cudart_stub.cc:31] ..."),
# absl's notice that precedes them, and the CPU-feature notice's second line.
_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.-]+\.(?:cc|h):\d+\]"
    r"|To enable the following instructions: .* rebuild TensorFlow"
)


def is_startup_noise(line: str) -> bool:
    """Whether a line of stderr is one of TensorFlow's C++ start-up log lines."""
    return _NOISE.match(line.strip()) is not None


@contextlib.contextmanager
def _filtered_stderr():
    """Route file descriptor 2 to a temporary file for the duration, then pass on
    every line that is not start-up noise. Python-level output in a notebook does
    not go through descriptor 2 and is not affected."""
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:                         # no descriptor 2 (some embedded runtimes)
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [line for line in tmp.read().decode("utf-8", "replace").splitlines(True)
                    if not is_startup_noise(line)]
            if kept:
                sys.stderr.write("".join(kept))
                with contextlib.suppress(Exception):
                    sys.stderr.flush()


def import_tensorflow():
    """TensorFlow, imported quietly, with TensorFloat-32 execution turned off."""
    global _tf
    if _tf is not None:
        return _tf
    with _lock:
        if _tf is None:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            quiet = "tensorflow" not in sys.modules
            with _filtered_stderr() if quiet else contextlib.nullcontext():
                import tensorflow as tf

                tf.config.list_physical_devices()     # the device probe logs here, not later
                tf.config.experimental.enable_tensor_float_32_execution(False)
            _tf = tf
    return _tf


def import_keras():
    """Keras 3 on the TensorFlow backend, after :func:`import_tensorflow`."""
    import_tensorflow()
    import keras

    return keras
