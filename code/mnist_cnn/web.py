"""Export a model for the book's in-page canvas, where the network runs in the reader's browser.

``python -m mnist_cnn export-web [--model PATH] [--out DIR]``

The served Keras model goes through the bridge (:func:`mnist_cnn.bridge.from_keras`:
BatchNorm folded into the Conv2D/Dense before it, fused activations split off,
inference no-ops dropped). A from-scratch NumPy model (``.npz``) is that network
already: its Dropout layers (no-ops at inference) are dropped and, if it ends in
logits, the Softmax its ``predict_proba`` applies is appended; TensorFlow is not
imported for it. What is left is the chain the book built by hand -
Conv2D, ReLU, MaxPooling2D, Flatten, Dense, Softmax - and that is all the page's
JavaScript (``book/_static/digit_widget/forward.js``) runs. Two files are written:

- ``weights.js``: one ``<script>``-loadable line, ``window.MNIST_CNN_WEIGHTS =
  {"manifest": {...}, "data": "<base64>"}`` (browsers refuse ``fetch()`` of local
  files, and the book must also work opened from disk);
- ``manifest.json``: the same manifest, for people and tests: the layer list with
  each weight's shape and offset, the dtype, the SHA-256 of the weight bytes, the
  validation accuracies the dtype was chosen on, the test accuracy of exactly
  the exported (possibly float16) weights, and the drawing surface the page gives
  the reader (``"canvas": {"size": ..., "brush": ...}``, in canvas pixels: the app's,
  :data:`mnist_cnn.canvas.CANVAS` and :data:`mnist_cnn.canvas.BRUSH`; the page's
  scripts hold no copy of them).

Float16 halves the download. It is used only when it costs at most
``MAX_LOSS_POINTS`` percentage points of accuracy against float32, both measured on
the fixed validation split of the training images
(:func:`mnist_cnn.data.split_validation`, 5,000 digits); otherwise float32 is
shipped. The test images choose nothing: they are read once, at the end, for the
test accuracy of what ships, the final figure.
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from pathlib import Path

import numpy as np

from mnist_cnn import paths
from mnist_cnn._io import atomic_pair, library_versions, sha256_bytes, sha256_file
from mnist_cnn.canvas import BRUSH, CANVAS, surface_problem
from mnist_cnn.shapes import INPUT_SHAPE, NUM_CLASSES

# 2: each layer entry is the layer's own config; 3: the manifest gives the drawing
# surface ("canvas": size and brush), which the page reads and no longer holds.
FORMAT = "mnist_cnn-web/3"
GLOBAL = "MNIST_CNN_WEIGHTS"          # the JavaScript global weights.js defines
WEIGHTS_JS = "weights.js"
MANIFEST = "manifest.json"
MAX_LOSS_POINTS = 0.05                # float16 allowed if it loses at most this much accuracy
# The operations the page's JavaScript implements (the chapters' layers, inference only).
WEB_LAYERS = ("Conv2D", "ReLU", "MaxPooling2D", "Flatten", "Dense", "Softmax")

__all__ = ["export_web", "ensure_export", "load_export", "read_weights_js", "check_manifest",
           "default_out_dir", "FORMAT", "MAX_LOSS_POINTS", "WEB_LAYERS", "stepthrough_html",
           "WIDGET_FILES", "widget_bytes"]

# What the digit widget loads beside weights.js (widget.js loads the three scripts after
# it), all from the book's static folder.
WIDGET_FILES = ("widget.js", "pad.js", "forward.js", "preprocess.js", "widget.css")


def stepthrough_html(kernels: dict, static: str = "../_static/digit_widget/") -> str:
    """The convolution chapter's step-through (``stepthrough.js``, in the book's web
    page) for ``kernels``, a dict name -> 3x3 array: the element carries them
    (``data-kernels``), so the chapter's code is their one home, and its pad's
    drawing surface (``data-canvas``, its size, and ``data-brush``, in canvas pixels:
    :data:`mnist_cnn.canvas.CANVAS` and :data:`mnist_cnn.canvas.BRUSH`, the app's), so
    the page loads no weights for it. ``static`` is the scripts' folder, relative to
    the page."""
    import html

    weights = {}
    for name, kernel in kernels.items():
        k = np.asarray(kernel, dtype=np.float64)
        if k.shape != (3, 3) or not np.isfinite(k).all():
            raise ValueError(f"kernel {name!r}: the step-through takes 3x3 finite kernels, "
                             f"got shape {k.shape}")
        weights[str(name)] = [float(np.float32(v)) for v in k.ravel()]
    if not weights:
        raise ValueError("the step-through needs at least one kernel")
    return (f'<div data-testid="conv-stepthrough" '
            f'data-kernels="{html.escape(json.dumps(weights))}" '
            f'data-canvas="{CANVAS}" data-brush="{BRUSH}"></div>\n'
            f'<script src="{html.escape(static)}widget.js"></script>')


def widget_bytes(export_dir=None, scripts_dir=None) -> dict:
    """Bytes the digit widget adds to a page: :data:`WIDGET_FILES` from ``scripts_dir``
    and weights.js from ``export_dir`` (both default :func:`default_out_dir`).
    Returns {"files": name -> bytes, "total": bytes, "gzip": the files gzipped one by
    one at level 9, summed}; FileNotFoundError if a file is missing."""
    import gzip

    export_dir = Path(export_dir) if export_dir else default_out_dir()
    scripts_dir = Path(scripts_dir) if scripts_dir else default_out_dir()
    files = [scripts_dir / name for name in WIDGET_FILES] + [export_dir / WEIGHTS_JS]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"the widget's files are missing: {', '.join(missing)} "
                                "(weights.js: python -m mnist_cnn export-web)")
    raw = {f.name: f.stat().st_size for f in files}
    packed = sum(len(gzip.compress(f.read_bytes(), 9)) for f in files)
    return {"files": raw, "total": sum(raw.values()), "gzip": packed}


def default_out_dir() -> Path:
    """Where the book serves the export from: ``book/_static/digit_widget/``."""
    return paths.web_export_dir()


def _web_unsupported(layer) -> str | None:
    """Why the page's JavaScript cannot run ``layer`` (a web layer class), or None."""
    config = layer.get_config()
    if type(layer).__name__ == "Conv2D":
        kh, kw = config["kernel_size"]
        if kh != kw:
            return f"'{layer.name}' has a {kh}x{kw} kernel; the page runs square kernels"
    if config.get("use_bias") is False:
        return f"'{layer.name}' has no bias; the page's layers all add one"
    return None


def _inference_chain(net):
    """A scratch network's inference computation as a new network with the same
    weights: Dropout (the identity at inference) dropped, and a Softmax appended
    unless it ends in one (its ``predict_proba`` applies that softmax)."""
    from mnist_cnn.scratch.layers import Dropout, Softmax
    from mnist_cnn.scratch.network import Sequential

    kept = [layer for layer in net.layers if not isinstance(layer, Dropout)]
    configs = [layer.get_config() for layer in kept]
    if not isinstance(kept[-1], Softmax):
        names = {c["name"] for c in configs}
        name = next(n for n in ("softmax", *(f"softmax_{k}" for k in range(1, len(names) + 2)))
                    if n not in names)
        configs.append(Softmax(name=name).get_config())
    return Sequential.from_config({**net.get_config(), "layers": configs},
                                  [w for layer in kept for w in layer.get_weights()])


def _web_network(model_path: Path):
    """The scratch network the page runs - bridged from a Keras file, or a NumPy
    model's own (``.npz``) - or ValueError saying why the page could not run it."""
    from mnist_cnn.model_files import is_numpy_model, load_numpy_mnist_model

    try:
        if is_numpy_model(model_path):
            net = _inference_chain(load_numpy_mnist_model(model_path)[0])
        else:
            from mnist_cnn.bridge import from_keras

            net = from_keras(model_path)
    except ValueError as exc:
        raise ValueError(f"cannot export {model_path.name} for the web: {exc}") from None
    other = [f"'{layer.name}' ({type(layer).__name__})" for layer in net.layers
             if type(layer).__name__ not in WEB_LAYERS]
    if other:
        raise ValueError(f"cannot export {model_path.name} for the web: the page's JavaScript "
                         f"runs only {', '.join(WEB_LAYERS)}; the model has {', '.join(other)}")
    why = [w for w in map(_web_unsupported, net.layers) if w]
    if why:
        raise ValueError(f"cannot export {model_path.name} for the web: {'; '.join(why)}")
    if tuple(net.input_shape) != INPUT_SHAPE:
        raise ValueError(f"cannot export {model_path.name} for the web: it takes input "
                         f"{tuple(net.input_shape)}, the page draws {INPUT_SHAPE} images")
    out = net.layers[-1]
    units = [layer.units for layer in net.layers if type(layer).__name__ == "Dense"]
    if type(out).__name__ != "Softmax" or not units or units[-1] != NUM_CLASSES:
        raise ValueError(f"cannot export {model_path.name} for the web: it must end in "
                         f"Dense({NUM_CLASSES}) and Softmax (ten digit probabilities)")
    return net


def _accuracy(net, x, y) -> float:
    return float(np.mean(net.predict(x, batch_size=500) == y))


def _with_weights(net, weights):
    """A copy of ``net`` (same architecture) carrying ``weights`` (float32)."""
    import copy

    twin = copy.deepcopy(net)
    twin.set_weights([np.asarray(w, np.float32) for w in weights])
    return twin


def export_web(model=None, out_dir=None, cache_dir=None, progress: bool = True) -> dict:
    """Export ``model`` (a Keras file or a from-scratch NumPy ``.npz``; default: the
    served model) to ``out_dir``.

    Returns the manifest (also written as ``manifest.json`` and inside ``weights.js``).
    Raises ValueError for a model the bridge or the page cannot run,
    FileNotFoundError for a missing model file.
    """
    model_path = Path(model) if model is not None else paths.default_keras_model()
    if not model_path.is_file():
        raise FileNotFoundError(f"no model file at {model_path}")
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir()
    t0 = time.perf_counter()
    net = _web_network(model_path)
    dtype, shipped, figures = _choose_dtype(net, cache_dir, progress)
    data = _weight_bytes(shipped)
    manifest = _manifest(model_path, net, shipped, dtype, data, figures)
    _write_export(out_dir, model_path.name, manifest, data)
    manifest["seconds"] = round(time.perf_counter() - t0, 1)
    return manifest


def ensure_export(out_dir=None, progress: bool = True) -> Path:
    """The folder of the book's export (default :func:`default_out_dir`), exported
    there now from the served model if it holds no ``weights.js``: a chapter's
    notebook run outside the book's build (on Colab, say), where no ``make book``
    exported it. An export that is there is left as it is."""
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir()
    if not (out_dir / WEIGHTS_JS).is_file():
        if progress:
            print(f"No export in {out_dir}: exporting the served model (about a minute)")
        export_web(out_dir=out_dir, progress=progress)
    return out_dir


def _choose_dtype(net, cache_dir, progress: bool) -> tuple[str, list, dict]:
    """(dtype, weights, figures): the dtype the page gets, chosen on the validation
    split, the weights in that dtype, and the figures as the manifest names them
    (the validation accuracies, and the test accuracy of exactly those weights)."""
    from mnist_cnn.data import load_mnist, prepare_images, split_validation

    weights32 = [np.asarray(w, np.float32) for w in net.get_weights()]
    weights16 = [w.astype(np.float16) for w in weights32]
    (x_train, y_train), (x_test, y_test) = load_mnist(cache_dir, progress=progress)
    # The dtype is a choice, so it is made on the validation split (the last 5,000
    # training images, the split the trainers choose their epoch on), never on the
    # test set.
    _, (x_val, y_val) = split_validation(x_train, y_train)
    x_val = prepare_images(x_val)
    val32 = _accuracy(net, x_val, y_val)
    val16 = _accuracy(_with_weights(net, weights16), x_val, y_val)
    loss_points = round((val32 - val16) * 100, 4)
    dtype = "float16" if loss_points <= MAX_LOSS_POINTS else "float32"
    shipped = weights16 if dtype == "float16" else weights32
    # The test set, once, for the final figure: exactly what ships.
    test_acc = _accuracy(_with_weights(net, shipped), prepare_images(x_test), y_test)
    return dtype, shipped, {
        "validation_images": int(len(y_val)),
        "validation_accuracy_float32": val32,
        "validation_accuracy_float16": val16,
        "float16_loss_points": loss_points,
        "max_loss_points": MAX_LOSS_POINTS,
        "test_images": int(len(y_test)),
        "test_accuracy": test_acc,
    }


def _weight_bytes(weights) -> bytes:
    """The weight arrays one after another, each in C order and little-endian."""
    return b"".join(np.ascontiguousarray(w).astype(w.dtype.newbyteorder("<")).tobytes()
                    for w in weights)


def _layer_entries(net, weights) -> tuple[list[dict], int]:
    """The manifest's layer list - each layer's own config, plus the name, shape,
    offset and length of each of its weights in ``weights`` (in the order of
    ``net.get_weights()``) - and the number of parameters."""
    layers, offset, i = [], 0, 0
    for layer in net.layers:
        entry = layer.get_config()       # the layer's own description, plus its weights
        keys = layer.weight_names()
        if keys:
            entry["weights"] = []
            for key in keys:
                w = weights[i]
                entry["weights"].append({"name": key, "shape": list(w.shape),
                                         "offset": offset, "length": int(w.size)})
                offset += int(w.size)
                i += 1
        layers.append(entry)
    return layers, offset


def _manifest(model_path: Path, net, shipped, dtype: str, data: bytes,
              figures: dict) -> dict:
    """What the export holds: the model it came from, the layers and where their
    weights are in ``data``, the dtype, and ``figures``: the validation accuracies
    it was chosen on and the test accuracy of what ships."""
    layers, parameters = _layer_entries(net, shipped)
    return {
        "format": FORMAT,
        "model": model_path.name,
        "model_sha256": sha256_file(model_path),
        "input_shape": list(INPUT_SHAPE),
        "classes": NUM_CLASSES,
        "canvas": {"size": CANVAS, "brush": BRUSH},   # the drawing surface, canvas pixels
        "layers": layers,
        "parameters": parameters,
        "dtype": dtype,
        "byte_order": "little",
        "weights_bytes": len(data),
        "weights_sha256": sha256_bytes(data),
        **figures,
        "command": "python -m mnist_cnn export-web",
        "versions": library_versions(),
    }


def _write_export(out_dir: Path, model_name: str, manifest: dict, data: bytes) -> None:
    """Write ``weights.js`` (the manifest and the base64 weights, as one JavaScript
    global) and ``manifest.json`` to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    script = (f"/* Generated by `python -m mnist_cnn export-web` from {model_name}; "
              f"do not edit. */\nwindow.{GLOBAL} = "
              + json.dumps({"manifest": manifest, "data": base64.b64encode(data).decode()},
                           separators=(",", ":")) + ";\n")
    # Both files or neither: weights.js is renamed into place first (it is what the
    # page loads, and Make's target), then the manifest beside it.
    with atomic_pair(out_dir / WEIGHTS_JS, out_dir / MANIFEST) as (tmp_js, tmp_manifest):
        tmp_js.write_text(script)
        tmp_manifest.write_text(json.dumps(manifest, indent=2) + "\n")


def check_manifest(manifest, where="the manifest") -> None:
    """ValueError, naming ``where``, unless ``manifest`` is this format's: the format
    string, and a usable drawing surface (``canvas``: its size and brush, by
    :func:`mnist_cnn.canvas.surface_problem`, the rule the page's widget.js applies)."""
    fmt = manifest.get("format") if isinstance(manifest, dict) else None
    if fmt != FORMAT:
        raise ValueError(f"{where} is a {fmt or 'unversioned'} export, this library reads "
                         f"{FORMAT}: export again (python -m mnist_cnn export-web)")
    canvas = manifest.get("canvas")
    if not isinstance(canvas, dict):
        raise ValueError(f"{where} gives no drawing surface (canvas.size and canvas.brush, "
                         f"in canvas pixels): export again")
    problem = surface_problem(canvas.get("size"), canvas.get("brush"))
    if problem:
        raise ValueError(f"{where} gives no usable drawing surface (canvas.size and "
                         f"canvas.brush): {problem}; export again")


def read_weights_js(path) -> tuple[dict, bytes]:
    """(manifest, weight bytes) from a ``weights.js``; ValueError if it is not one (of
    this format: :func:`check_manifest`) or its bytes do not match the manifest's SHA-256."""
    text = Path(path).read_text()
    start = text.find("{", text.find(f"window.{GLOBAL}"))
    end = text.rstrip().rstrip(";").rfind("}")
    try:
        payload = json.loads(text[start:end + 1])
        manifest, data = payload["manifest"], base64.b64decode(payload["data"], validate=True)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a web export ({exc})") from None
    check_manifest(manifest, str(path))
    if sha256_bytes(data) != manifest.get("weights_sha256"):
        raise ValueError(f"{path}: the weights do not match the manifest's SHA-256")
    return manifest, data


def load_export(out_dir=None):
    """The NumPy engine running exactly the exported weights: (manifest, Sequential).

    Float16 weights are widened to float32, as the page's JavaScript does.
    """
    from mnist_cnn.scratch import network

    out_dir = Path(out_dir) if out_dir is not None else default_out_dir()
    manifest, data = read_weights_js(out_dir / WEIGHTS_JS)
    flat = np.frombuffer(data, dtype=np.dtype(manifest["dtype"]).newbyteorder("<"))
    configs, weights = [], []
    for e in manifest["layers"]:
        if e["class"] not in WEB_LAYERS:
            raise ValueError(f"unknown layer class {e['class']!r} in the manifest")
        configs.append({k: v for k, v in e.items() if k != "weights"})
        for w in e.get("weights", []):
            weights.append(flat[w["offset"]:w["offset"] + w["length"]]
                           .astype(np.float32).reshape(w["shape"]))
    net = network.Sequential.from_config(
        network.describe(configs, manifest["input_shape"]), weights)
    return manifest, net


def cli_export_web(args: argparse.Namespace) -> int:
    """``python -m mnist_cnn export-web [--model PATH] [--out DIR]``."""
    out_dir = Path(args.out) if args.out else default_out_dir()
    m = export_web(args.model, out_dir, cache_dir=getattr(args, "cache_dir", None),
                   progress=False)
    size = (out_dir / WEIGHTS_JS).stat().st_size
    print(f"Exported {m['model']} for the web: {len(m['layers'])} layers, "
          f"{m['parameters']:,} parameters as {m['dtype']} ({m['weights_bytes']:,} bytes; "
          f"{WEIGHTS_JS} {size:,} bytes), chosen on {m['validation_images']:,} validation "
          f"images (float32 {m['validation_accuracy_float32']:.2%}, float16 "
          f"{m['validation_accuracy_float16']:.2%}: {m['float16_loss_points']:+.2f} points, "
          f"limit {MAX_LOSS_POINTS}). Test accuracy of what ships "
          f"{m['test_accuracy']:.2%}. Written to {out_dir} in {m['seconds']} s")
    return 0
