"""The canvas app: draw a digit (or upload a photo), see what the network sees and why.

Run it with ``make app`` or ``streamlit run app/streamlit_app.py``. Set
``MNIST_CNN_MODEL=/path/to/model.keras`` to serve any Keras MNIST classifier (or a
from-scratch NumPy model, ``.npz``, which runs on the NumPy engine only).

The UI is thin: preprocessing lives in :mod:`mnist_cnn.preprocess`, loading and
inference in :mod:`mnist_cnn.predict` (shared with the CLI and the book). The
model is loaded once per process (``st.cache_resource``) and called through its
fast path, not ``model.predict``.

Why the page answers at once and never shows a stale answer as current:

- The canvas, the prediction and its details are one ``st.fragment``: a stroke
  reruns only that (not the header or the sidebar; the model file is only checked
  for a change), and the work a rerun does is what is on screen: the engine
  comparison and the feature maps are computed only when switched on, and a drawing
  already read is not read again.
- No cleanup after each run that would cost more than the run: Streamlit's
  ``keras.backend.clear_session()`` call is switched off (see
  :func:`_keep_keras_state_between_runs`), and so is its full garbage collection
  (``runner.postScriptGC`` in ``.streamlit/config.toml``).
- The answer sits right under the canvas (on a phone too, where the columns stack).
- Between a change of the drawing and its answer the old answer is dimmed and
  labelled "Updating…": the page's script (``app/page.js``, its rule at the top)
  marks the page pending from the moment the pen touches the canvas, or Undo, Redo or
  Reset is pressed, until the server's answer for the drawing now on screen is shown,
  however long that takes. Every answer starts with a hidden mark naming the run that
  rendered it and the stroke count of the drawing it read (:func:`answer_mark_ui`).
  Streamlit's own stale marks (``data-stale``) are dimmed at once too
  (``app/page.css``).
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import logging
import os
import secrets
import sys
import time
from pathlib import Path

import numpy as np
import page_assets  # app/page_assets.py: the page's style, script and DOM contract
import streamlit as st
from mnist_cnn import paths
from mnist_cnn.canvas import BRUSH as DEFAULT_STROKE
from mnist_cnn.canvas import CANVAS as CANVAS_SIZE
from mnist_cnn.predict import INFERENCE_ENGINES, Predictor, top_k
from mnist_cnn.preprocess import MAX_BYTES, load_image, to_mnist

log = logging.getLogger("mnist_cnn.app")

CANVAS_KEY = "canvas"
UPLOAD_KEY = "upload"
EMPTY_PROMPT = "Draw a digit (0–9) on the canvas: the prediction appears as you release the mouse."
UPLOAD_PROMPT = "Upload a PNG or JPEG photo or scan of one handwritten digit."
BLANK_UPLOAD = "No digit found in this image: it looks blank. Try another one."
# Test hook, unset in production: while the file this names exists, every run of the
# workspace stops after the answer, before the details - a server as slow as a test
# wants, still busy with one drawing when the next comes (tests/test_browser_pending.py).
HOLD_ENV = "MNIST_CNN_APP_TEST_HOLD"
GET_A_MODEL = ("Get one with `python -m mnist_cnn train-keras`, or use the committed "
               "`models/cnn_model.keras` from the repository; or set `MNIST_CNN_MODEL` "
               "to a Keras MNIST classifier.")

# Defaults if _config.yml (the book's config, the single source of both URLs) is absent.
_DEFAULT_BOOK_URL = "https://cnn-from-scratch.github.io/cnn-from-scratch/"
_DEFAULT_APP_URL = "https://cnn-from-scratch.streamlit.app"
_DEFAULT_REPO_URL = "https://github.com/cnn-from-scratch/cnn-from-scratch"


@st.cache_resource(show_spinner=False)
def _site_urls() -> tuple[str, str, str]:
    """(book URL, live app URL, repository URL) read from _config.yml, once per
    process: Streamlit re-executes this script on every interaction."""
    book, app, repo = _DEFAULT_BOOK_URL, _DEFAULT_APP_URL, _DEFAULT_REPO_URL
    try:
        import yaml

        cfg = yaml.safe_load((paths.REPO_ROOT / "_config.yml").read_text()) or {}
        book = (cfg.get("html") or {}).get("baseurl") or book
        repo = (cfg.get("repository") or {}).get("url") or repo
        subs = ((cfg.get("sphinx") or {}).get("config") or {}).get("myst_substitutions") or {}
        app = subs.get("live_app_url") or app
    except Exception:  # no config / no PyYAML: the defaults are fine
        pass
    return book, app, repo


BOOK_URL, APP_URL, REPO_URL = _site_urls()

# --------------------------------------------------------------------------- model


def _keep_keras_state_between_runs() -> None:
    """Stop Streamlit calling ``keras.backend.clear_session()`` after every script run.

    Streamlit does it for apps that build models in the script. This one builds none:
    its model is loaded once per process and shared. And clear_session costs a full
    garbage collection of a process holding TensorFlow, and drops TensorFlow's kernel
    cache, so the next prediction sets its kernels up again: together about 0.3
    CPU-seconds on every stroke, reset or toggle here (measured with the load
    benchmark). Streamlit's other cleanup (closing matplotlib figures) is kept. The
    hook is private (streamlit is pinned to 1.67.x); if it moves, nothing breaks, the
    app is only slower.
    """
    from streamlit.runtime.scriptrunner import script_runner

    if callable(getattr(script_runner, "_clean_problem_modules", None)):
        script_runner._clean_problem_modules = _close_matplotlib_figures


def _close_matplotlib_figures() -> None:
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        try:
            plt.close("all")
        except Exception:  # never let cleanup break a run (as Streamlit does)
            log.debug("could not close matplotlib figures", exc_info=True)


_keep_keras_state_between_runs()


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def _load_predictor(path: str, mtime_ns: int, size: int) -> Predictor:
    # Keyed by modification time and size as well as path: a replaced model file
    # is reloaded on the next interaction, no restart needed (the size catches a
    # copy that kept the old timestamp, e.g. `cp -p`). Failures are not cached,
    # so a missing file that reappears is picked up too.
    return Predictor.from_file(path)


def get_predictor() -> tuple[Predictor | None, Path, str | None]:
    """(predictor or None, model path, error message or None) - never raises."""
    path = paths.default_keras_model()
    try:
        stat = path.stat()
    except OSError:
        return None, path, f"No model file at `{path}`. {GET_A_MODEL}"
    try:
        return _load_predictor(str(path), stat.st_mtime_ns, stat.st_size), path, None
    except (FileNotFoundError, ValueError) as exc:
        return None, path, f"Could not use the model `{path}`: {exc}"
    except Exception as exc:  # anything else a broken file can throw
        log.exception("model load failed")
        return None, path, (f"Could not load the model `{path}` ({type(exc).__name__}). "
                            f"{GET_A_MODEL}")


# ------------------------------------------------------------------------------ UI


def page_assets_ui() -> None:
    """The page's style sheet and its pending-answer script (app/page.css, app/page.js;
    read once per process)."""
    st.html(page_assets.style())
    with st.container(key=page_assets.SCRIPT_KEY):  # hidden: the script needs an element
        st.html(page_assets.script(), unsafe_allow_javascript=True)


def header_ui() -> None:
    st.title("Draw a digit")
    with st.container(key="intro"):
        st.markdown(
            "A convolutional network trained on MNIST reads your handwriting. "
            f"How it works, built from scratch in NumPy: **[the book]({BOOK_URL})**  ·  "
            f"[source]({REPO_URL})")


def sidebar_ui(predictor: Predictor | None, path: Path) -> tuple[str, int]:
    with st.sidebar:
        st.header("Settings")
        stroke = st.slider("Stroke width", 6, 40, DEFAULT_STROKE, key="stroke_width")
        first = (INFERENCE_ENGINES.index(predictor.default_engine)
                 if predictor is not None else 0)
        engine = st.radio("Engine", INFERENCE_ENGINES, index=first, key="engine", horizontal=True,
                          format_func={"keras": "Keras model",
                                       "numpy": "NumPy (from scratch)"}.get,
                          help="The same weights run by Keras or by the from-scratch NumPy "
                               "network (through the bridge).")
        st.divider()
        st.caption(f"Model: `{path.name}`")
        if predictor is not None:
            st.caption(f"{predictor.model.count_params():,} parameters · "
                       f"{len(predictor.conv_blocks)} conv layers")
        st.caption(f"[The book]({BOOK_URL}) · [Live app]({APP_URL})")
    return engine, stroke


def canvas_ui(stroke: int):
    """The drawing canvas; returns (PNG bytes or None before the first stroke, number of
    strokes in the drawing)."""
    from streamlit_drawable_canvas import st_canvas

    result = st_canvas(
        stroke_width=stroke, stroke_color="#FFFFFF", background_color="#000000",
        height=CANVAS_SIZE, width=CANVAS_SIZE, drawing_mode="freedraw",
        return_image_data=True, key=CANVAS_KEY)
    strokes = len((result.json_data or {}).get("objects") or [])
    return result.image_bytes, strokes


def _hold_for_tests() -> None:
    """The test hook (:data:`HOLD_ENV`): wait while its file exists. Does nothing when
    the variable is unset, as everywhere but in the browser tests that hold a run."""
    hold = os.environ.get(HOLD_ENV)
    while hold and os.path.exists(hold):
        time.sleep(0.02)


def _read_canvas(data: bytes | None):
    """(model input or None, error message or None) for the canvas PNG (None: nothing
    drawn yet)."""
    if data is None:
        return None, None
    try:
        return _read_drawing(data), None
    except ValueError as exc:
        return None, f"Could not read the drawing: {exc}."


def _read_drawing(data: bytes):
    """The canvas PNG -> the 28x28 model input (None: no ink), remembered per drawing:
    a rerun that did not change the drawing (a toggle, the engine) does not read it again."""
    key = hashlib.sha1(data).hexdigest()
    memo = st.session_state.get("_drawing")
    if memo is not None and memo[0] == key:
        return memo[1]
    # The PNG comes from the browser: open it with the same limits as an upload
    # (a crafted client could send anything). 16x the canvas area allows for
    # high-density screens.
    x = to_mnist(load_image(data, max_bytes=MAX_BYTES, max_pixels=16 * CANVAS_SIZE ** 2))
    st.session_state["_drawing"] = (key, x)
    return x


def upload_ui():
    """The upload input; returns (PIL image or None, error message or None)."""
    # No `type=` filter: Streamlit would raise on a disallowed extension before the
    # script runs (no clear message possible); load_image checks the content instead.
    up = st.file_uploader("Upload an image (PNG, JPEG, GIF, BMP, WebP)", key=UPLOAD_KEY,
                          help=f"Up to {MAX_BYTES // (1024 * 1024)} MB.")
    if up is None:
        return None, None
    try:
        img = load_image(up, max_bytes=MAX_BYTES)
    except (ValueError, FileNotFoundError) as exc:
        return None, f"Could not use `{up.name}`: {exc}."
    _image_ui(img, CANVAS_SIZE, up.name, "the uploaded image")
    return img, None


def _image_ui(img, width: int, caption: str, alt: str) -> None:
    """Show an image inline (a data URL) rather than through st.image's media files:
    media files of the previous run are deleted on every rerun, and a browser still
    fetching one gets a 404 - a console error for every quick redraw."""
    from PIL import Image

    if isinstance(img, np.ndarray):
        img = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
    img = img.copy()
    img.thumbnail((2 * width, 2 * width))
    buf = io.BytesIO()
    img.convert("RGBA" if "A" in img.getbands() else "RGB").save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    st.markdown(f'<img src="{url}" width="{width}" alt="{html.escape(alt)}" '
                'style="image-rendering: pixelated; border-radius: 4px">',
                unsafe_allow_html=True)
    st.caption(caption)


def model_input_ui(x: np.ndarray) -> None:
    _image_ui(np.kron(x, np.ones((6, 6), np.float32)), 168,
              "What the model sees: 28×28, centred like MNIST",
              "the 28 by 28 pixel image given to the model")


def answer_mark_ui(strokes: int | None) -> None:
    """The hidden mark that starts every answer: a token new in every run, and for a
    drawing its stroke count. The page script waits for it (app/page.js): an answer is
    the answer for the drawing on screen when it was rendered after the drawing's last
    change and counts its strokes."""
    st.html(page_assets.answer_mark(secrets.token_hex(4), strokes))


def prediction_ui(predictor: Predictor, x: np.ndarray, engine: str) -> np.ndarray:
    probs = predictor.predict_proba(x, engine)
    digit = int(probs.argmax())
    # Kept in session state too, for tests and for anyone scripting the app.
    st.session_state["probabilities"] = [float(p) for p in probs]
    st.metric(label="Prediction", value=digit)
    (_, p1), (d2, p2) = top_k(probs, 2)
    st.caption(f"{p1:.1%} sure · next best: {d2} ({p2:.1%})")
    return probs


def probabilities_ui(probs: np.ndarray) -> None:
    """A bar per digit, in plain HTML: a chart library costs the server and the browser
    more than the answer itself on every stroke (app/page.css styles the bars)."""
    st.subheader("Probabilities")
    best = int(probs.argmax())
    rows = "".join(
        f'<div class="digit-prob{" best" if d == best else ""}"><span>{d}</span>'
        f'<span class="bar"><span style="width: {100 * p:.1f}%"></span></span>'
        f'<span>{p:.1%}</span></div>' for d, p in enumerate(probs.tolist()))
    st.html(f'<div class="digit-probs" role="table" aria-label="probability of each '
            f'digit">{rows}</div>')


def engines_ui(predictor: Predictor, x: np.ndarray, probs: np.ndarray, engine: str) -> None:
    other = next(e for e in INFERENCE_ENGINES if e != engine)
    try:
        other_probs = predictor.predict_proba(x, other)
    except ValueError as exc:
        st.caption(f"Only the {engine} engine is available: {exc}")
        return
    same = int(other_probs.argmax()) == int(probs.argmax())
    diff = float(np.abs(other_probs - probs).max())
    verdict = "agree" if same else "disagree"
    st.caption(f"Keras and NumPy engines {verdict}: both say "
               f"{int(probs.argmax())}, largest probability difference {diff:.1e}."
               if same else
               f"Keras and NumPy engines {verdict}: {engine} says {int(probs.argmax())}, "
               f"{other} says {int(other_probs.argmax())} (max difference {diff:.1e}).")


def _mosaic(fmap: np.ndarray, cols: int = 8, pad: int = 1) -> np.ndarray:
    """(H, W, C) feature maps -> one gray image tiling the C channels, each scaled to [0, 1]."""
    h, w, c = fmap.shape
    rows = -(-c // cols)
    out = np.ones((rows * (h + pad) - pad, cols * (w + pad) - pad), np.float32)
    for k in range(c):
        m = fmap[..., k]
        lo, hi = float(m.min()), float(m.max())
        m = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
        r, q = divmod(k, cols)
        out[r * (h + pad): r * (h + pad) + h, q * (w + pad): q * (w + pad) + w] = m
    return out


def feature_maps_ui(predictor: Predictor, x: np.ndarray, engine: str) -> None:
    try:
        maps = predictor.feature_maps(x, engine)
    except ValueError as exc:
        st.info(f"Feature maps are not available: {exc}")
        return
    if not maps:
        st.info("This model has no conv layers.")
    for name, fmap in maps:
        scale = max(1, 96 // fmap.shape[0])
        img = np.kron(_mosaic(fmap), np.ones((scale, scale), np.float32))
        _image_ui(img, img.shape[1], f"{name}: {fmap.shape[2]} maps of "
                  f"{fmap.shape[0]}×{fmap.shape[1]} (after ReLU; bright = strong response)",
                  f"feature maps of layer {name}")


def answer_ui(predictor: Predictor, x: np.ndarray | None, engine: str, prompt: str,
              error: str | None) -> np.ndarray | None:
    """The prediction, right under the input; or the prompt when there is nothing to read."""
    if error:
        st.error(error)
    if x is None:
        st.session_state.pop("probabilities", None)
        st.info(prompt)
        return None
    return prediction_ui(predictor, x, engine)


def details_ui(predictor: Predictor, x: np.ndarray, probs: np.ndarray, engine: str) -> None:
    """What the model saw and why: computed only for what is switched on."""
    model_input_ui(x)
    probabilities_ui(probs)
    if st.toggle("Compare the Keras and NumPy engines", key="compare",
                 help="Run the same weights in the other engine and compare."):
        engines_ui(predictor, x, probs, engine)
    if st.toggle("Feature maps: what each conv layer responds to", key="feature_maps"):
        feature_maps_ui(predictor, x, engine)


@st.fragment
def workspace_ui(stroke: int, engine: str, predictor: Predictor) -> None:
    """Input, answer and details: a stroke, an upload or a toggle reruns only this."""
    current, _, error = get_predictor()
    if error is not None or current is not predictor:
        st.rerun()  # the model file changed: the whole page shows the new one (or why not)
    _guarded(_workspace, stroke, engine, predictor)


def _workspace(stroke: int, engine: str, predictor: Predictor) -> None:
    with st.container(key="workspace"):
        left, right = st.columns([1, 1], gap="large")
        with left:
            source = st.radio("Input", ["Draw", "Upload"], key="source", horizontal=True,
                              label_visibility="collapsed")
            drawing = source == "Draw"
            if drawing:
                data, strokes = canvas_ui(stroke)
            else:
                img, error = upload_ui()
            with st.container(key=page_assets.ANSWER_KEY):
                # The mark first: whatever follows (or fails), the page knows this run's
                # answer and the drawing it read.
                answer_mark_ui(strokes if drawing else None)
                if drawing:
                    x, error = _read_canvas(data)
                    prompt = EMPTY_PROMPT
                else:
                    x = None if img is None else to_mnist(img)
                    prompt = UPLOAD_PROMPT if img is None else BLANK_UPLOAD
                probs = answer_ui(predictor, x, engine, prompt, error)
        _hold_for_tests()
        with right, st.container(key=page_assets.RESULTS_KEY):
            if probs is not None:
                details_ui(predictor, x, probs, engine)


def main() -> None:
    st.set_page_config(page_title="Draw a digit · CNN From Scratch", page_icon="✏️",
                       layout="wide")
    page_assets_ui()
    header_ui()
    predictor, path, error = get_predictor()
    engine, stroke = sidebar_ui(predictor, path)
    if error is not None:
        st.error(error)
        st.button("Try again")  # a click reruns: a model file that is back gets loaded
        return
    problem = predictor.problem(engine)
    if problem:
        engine = predictor.default_engine      # the one engine every model runs on
        st.warning(f"Showing the {'Keras' if engine == 'keras' else 'NumPy'} engine "
                   f"instead: {problem}")
    workspace_ui(stroke, engine, predictor)


def _guarded(run, *args) -> None:
    """Run part of the page; the app never shows a traceback, it logs one. (A fragment
    rerun does not pass through main, so the fragment is guarded on its own.)"""
    try:
        run(*args)
    except Exception as exc:
        log.exception("app error")
        st.error(f"Something went wrong ({type(exc).__name__}: {exc}). "
                 "Try again, or reload the page.")


if __name__ == "__main__":
    _guarded(main)
