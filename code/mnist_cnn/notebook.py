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

__all__ = ["use_book_style", "show", "source", "timings", "best_of", "best_of_each",
           "image_grid", "plot_history", "plot_seeds", "numerical_gradient", "rel_error",
           "check_gradient"]


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


_SUFFIX_LANGUAGES = {".py": "python", ".js": "javascript", ".toml": "toml", ".txt": "text",
                     ".json": "json", ".yml": "yaml", ".yaml": "yaml", ".cfg": "ini",
                     ".ini": "ini", ".sh": "bash", ".html": "html", ".css": "css",
                     ".md": "markdown"}


def _python_definition(text: str, name: str, path: str) -> str:
    """The function, class or ``Class.method`` called ``name`` in Python source
    ``text``, decorators included (found with ``ast``, nothing is imported)."""
    import ast

    node = ast.parse(text, filename=path)
    for part in name.split("."):           # down Class.method through each body
        found = [n for n in getattr(node, "body", [])
                 if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                 and n.name == part]
        if not found:
            raise LookupError(f"{path}: no definition {name!r}")
        node = found[-1]                   # the last one wins, as at run time
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    return "".join(text.splitlines(keepends=True)[first - 1:node.end_lineno])


def _js_function(text: str, name: str, path: str) -> str:
    """``function name(...) {...}`` in JavaScript source ``text``, with the ``//``
    comment lines right above it."""
    import re

    lines = text.splitlines(keepends=True)
    pattern = re.compile(rf"^\s*(?:async\s+)?function\s+{re.escape(name)}\s*\(")
    start = next((i for i, line in enumerate(lines) if pattern.match(line)), None)
    if start is None:
        raise LookupError(f"{path}: no 'function {name}('")
    end, depth, opened = start, 0, False   # to the brace that closes the body
    for end in range(start, len(lines)):
        stripped = lines[end].split("//")[0]
        depth += stripped.count("{") - stripped.count("}")
        opened = opened or "{" in stripped
        if opened and depth <= 0:
            break
    while start > 0 and lines[start - 1].lstrip().startswith("//"):
        start -= 1                         # the comment that documents it
    return "".join(lines[start:end + 1])


def source(obj, name: str | None = None, *, language: str | None = None,
           as_text: bool = False):
    """Show source code as a highlighted code block, in the book and in a notebook alike.

    - ``source(obj)``: a library function, class or method (``inspect.getsource``).
    - ``source(path, name)``: one definition in a file, without importing the file
      (importing a Streamlit script would run it): in a ``.py`` file the
      function, class or ``Class.method`` called ``name``, decorators included, found
      with ``ast``; in a ``.js`` file the ``function name(...) {...}`` with the
      ``//`` comment lines right above it.
    - ``source(path)``: a whole file, e.g. ``../requirements.txt``.

    ``language`` names the highlighting; by default it follows the file's suffix
    (``.py`` python, ``.js`` javascript, ``.toml`` toml, anything unknown text).
    Paths are relative to the working directory, which is ``book/`` for a chapter
    (the book build and the Colab setup cell both run chapters there).
    With ``as_text=True`` nothing is displayed: the code and its language are returned
    (the tests count the lines of every display).
    """
    import os
    import re
    import textwrap

    if not isinstance(obj, (str, os.PathLike)):
        if name is not None:
            raise TypeError("source(obj) takes no name: pass a path to pick a definition")
        code, lang = inspect.getsource(obj), "python"
    else:
        path = os.fspath(obj)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such file (relative to {os.getcwd()}; "
                                    "chapters run in book/)")
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        lang = _SUFFIX_LANGUAGES.get(os.path.splitext(path)[1].lower(), "text")
        if name is None:
            code = text
        elif lang == "python":
            code = _python_definition(text, name, path)
        elif lang == "javascript":
            code = _js_function(text, name, path)
        else:
            raise ValueError(f"{path}: a definition can be picked from .py and .js files only")
    code = textwrap.dedent(code).rstrip("\n") + "\n"   # a method reads from column 0
    lang = language or lang
    if as_text:
        return code, lang
    from IPython.display import Markdown, display

    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", code)), default=0))
    display(Markdown(f"{fence}{lang}\n{code}{fence}"))
    return None


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


def plot_history(history, title: str | None = None):
    """Learning curves of one run: loss (left) and accuracy (right) per epoch, on
    the training batches and, where the run kept them, on the validation data.

    Inputs: ``history``, a dict of per-epoch lists with "loss" and "accuracy" and
    optionally "val_loss" and "val_accuracy": what ``fit`` returns, a Keras
    ``History.history``, or a model card's "history"; ``title`` above both panels.
    Returns the figure (pass it to :func:`show`).
    """
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.0 if title else 2.8))
    for ax, key, ylabel in zip(axes, ("loss", "accuracy"), ("cross-entropy", "accuracy"),
                               strict=True):
        ax.plot(epochs, history[key], "o-", label="train")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], "s--", label="validation")
        ax.set(xlabel="epoch", ylabel=ylabel, title=key, xticks=epochs)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_seeds(ax, x, runs, style: str = "o-", scale: float = 1.0, **line_kw):
    """Curves from several seeds (one row each), drawn as their mean with a band of
    ± one standard deviation (ddof=1) around it, in the line's colour.

    Inputs: ``ax``, a Matplotlib axis; ``x`` (P,); ``runs`` (seeds, P), one row per
    seed; ``style`` and ``line_kw`` (label, color, ms, ...) go to ``ax.plot``;
    ``scale`` multiplies the values (100 for percentages).
    Returns (mean, sd), each (P,), scaled. A point where any seed is not finite (NaN,
    or None: a diverged run) has no mean or band, so the curve breaks there.
    ValueError unless ``runs`` is 2-D with at least two seeds.
    """
    runs = np.asarray(runs, dtype=float) * scale
    if runs.ndim != 2 or len(runs) < 2:
        raise ValueError(f"plot_seeds needs runs of shape (seeds >= 2, points), got "
                         f"{runs.shape}")
    mean, sd = runs.mean(axis=0), runs.std(axis=0, ddof=1)
    line, = ax.plot(x, mean, style, **line_kw)
    ax.fill_between(x, mean - sd, mean + sd, color=line.get_color(), alpha=0.2, lw=0)
    return mean, sd


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


def best_of_each(fns, repeat: int = 7, warmup: int = 1) -> list[float]:
    """:func:`best_of` for several functions to be compared, their calls taken in
    turn (one of each, ``repeat`` times), so that a busy spell of the machine falls
    on all of them rather than on one: the fastest call of each, in seconds."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    rounds = [[timings(fn, 1, 0)[0] for fn in fns] for _ in range(repeat)]
    return [float(t) for t in np.min(rounds, axis=0)]


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
