"""Helpers the chapters share, in the spirit of d2l's ``d2l`` module: show a
figure or a library function, time a call, draw a grid of digits, check a
gradient numerically. The tests use the same gradient check.

Matplotlib and IPython are imported only by the functions that draw or display.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable

import numpy as np

from mnist_cnn.numerics import rel_error  # the gradient check's error, re-exported

__all__ = ["use_book_style", "show", "source", "timings", "best_of", "image_grid",
           "numerical_gradient", "rel_error", "check_gradient"]


# ---------------------------------------------------------------- display
def use_book_style() -> None:
    """PNG figures at the book's size and font (call once, in the setup cell)."""
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    matplotlib.rcParams["figure.max_open_warning"] = 0
    set_matplotlib_formats("png")
    plt.rcParams.update({"figure.dpi": 110, "font.size": 9, "axes.titlesize": 9})


def show(fig) -> None:
    """Display a finished figure in the page and free it."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    display(fig)
    plt.close(fig)


def source(obj) -> None:
    """Show the source code of a library function or class as a code block."""
    from IPython.display import Markdown, display

    display(Markdown(f"```python\n{inspect.getsource(obj)}```"))


def image_grid(images, titles=None, ncols: int = 8, cmap: str = "gray", size: float = 1.1,
               **imshow_kw):
    """A figure with one image per axis, ``ncols`` to a row, axes off.

    Inputs: images, a sequence of (H, W) arrays; titles, one string each (optional).
    Returns the figure (pass it to :func:`show`).
    """
    import matplotlib.pyplot as plt

    images = list(images)
    nrows = max(1, -(-len(images) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * 1.15),
                             squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < len(images):
            ax.imshow(np.asarray(images[i]), cmap=cmap, **imshow_kw)
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- timing
def timings(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> np.ndarray:
    """Wall-clock seconds of ``repeat`` calls of ``fn()``, after ``warmup`` untimed ones
    (the first call often pays for tracing, allocation or caches)."""
    for _ in range(warmup):
        fn()
    seconds = np.empty(repeat)
    for i in range(repeat):
        t0 = time.perf_counter()
        fn()
        seconds[i] = time.perf_counter() - t0
    return seconds


def best_of(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> float:
    """The fastest of ``repeat`` timed calls of ``fn()``, in seconds: as ``timeit``
    reports, since interference from the rest of the machine only ever adds time."""
    return float(timings(fn, repeat, warmup).min())


# ---------------------------------------------------------------- gradient checks
def numerical_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """dF/dx by centred differences, (f(x + h) - f(x - h)) / 2h, one element at a time.

    ``f`` takes no arguments and reads ``x``, which is perturbed in place and
    restored. Use float64: in float32 the round-off swamps the difference.
    """
    grad = np.zeros_like(x, dtype=np.float64)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        fp = f()
        x[i] = old - h
        fm = f()
        x[i] = old
        grad[i] = (fp - fm) / (2 * h)
    return grad


def check_gradient(forward, backward_grads, inputs: dict, rng, h: float = 1e-6) -> dict:
    """Gradient-check an operation; returns {input name: relative error}.

    - forward(**inputs) -> out
    - backward_grads(dout) -> {name: analytic gradient}, called right after a
      forward pass on the unperturbed inputs

    The scalar checked is sum(out * dout) for a fixed random ``dout`` drawn from
    ``rng``, so every output element matters. Pass float64 inputs.
    """
    out = forward(**inputs)
    dout = rng.standard_normal(np.shape(out))
    analytic = backward_grads(dout)
    errors = {}
    for name, grad in analytic.items():
        num = numerical_gradient(lambda: float(np.sum(forward(**inputs) * dout)), inputs[name], h)
        errors[name] = rel_error(grad, num)
    return errors
