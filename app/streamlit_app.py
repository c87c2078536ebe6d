"""The canvas app: draw a digit (or upload a photo), see what the network sees and why.

Run it with ``make app`` or ``streamlit run app/streamlit_app.py``. Set
``MNIST_CNN_MODEL=/path/to/model.keras`` to serve any Keras MNIST classifier.

The UI is thin: preprocessing lives in :mod:`mnist_cnn.preprocess`, loading and
inference in :mod:`mnist_cnn.predict` (shared with the CLI and the book). The
model is loaded once per process (``st.cache_resource``) and called through its
fast path, not ``model.predict``.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from pathlib import Path

import numpy as np
import streamlit as st
from mnist_cnn import paths
from mnist_cnn.predict import ENGINES, Predictor, top_k
from mnist_cnn.preprocess import MAX_BYTES, load_image, to_mnist

log = logging.getLogger("mnist_cnn.app")

CANVAS_SIZE = 280
CANVAS_KEY = "canvas"
UPLOAD_KEY = "upload"
DEFAULT_STROKE = 18
EMPTY_PROMPT = "Draw a digit (0–9) on the canvas: the prediction appears as you release the mouse."
UPLOAD_PROMPT = "Upload a PNG or JPEG photo or scan of one handwritten digit."
BLANK_UPLOAD = "No digit found in this image: it looks blank. Try another one."
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


def header_ui() -> None:
    st.title("Draw a digit")
    st.markdown(
        "A convolutional network trained on MNIST reads your handwriting. "
        f"How it works, built from scratch in NumPy: **[the book]({BOOK_URL})**  ·  "
        f"[source]({REPO_URL})")


def sidebar_ui(predictor: Predictor | None, path: Path) -> tuple[str, int]:
    with st.sidebar:
        st.header("Settings")
        stroke = st.slider("Stroke width", 6, 40, DEFAULT_STROKE, key="stroke_width")
        engine = st.radio("Engine", ENGINES, key="engine", horizontal=True,
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
    """The drawing canvas; returns its picture (PIL RGBA) or None before the first stroke."""
    from streamlit_drawable_canvas import st_canvas

    result = st_canvas(
        stroke_width=stroke, stroke_color="#FFFFFF", background_color="#000000",
        height=CANVAS_SIZE, width=CANVAS_SIZE, drawing_mode="freedraw",
        return_image_data=True, key=CANVAS_KEY)
    st.caption("Undo, redo and reset are in the canvas toolbar.")
    data = result.image_bytes
    if data is None:
        return None
    # The PNG comes from the browser: open it with the same limits as an upload
    # (a crafted client could send anything). 16x the canvas area allows for
    # high-density screens.
    try:
        return load_image(data, max_bytes=MAX_BYTES, max_pixels=16 * CANVAS_SIZE ** 2)
    except ValueError as exc:
        st.error(f"Could not read the drawing: {exc}.")
        return None


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
    st.subheader("Probabilities")
    st.bar_chart({"probability": {str(d): float(p) for d, p in enumerate(probs)}},
                 x_label="digit", y_label="probability", height=220)


def engines_ui(predictor: Predictor, x: np.ndarray, probs: np.ndarray, engine: str) -> None:
    other = "numpy" if engine == "keras" else "keras"
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
    with st.expander("Feature maps: what each conv layer responds to", expanded=False):
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


def results_ui(predictor: Predictor, x: np.ndarray | None, engine: str, prompt: str) -> None:
    if x is None:
        st.session_state.pop("probabilities", None)
        st.info(prompt)
        return
    model_input_ui(x)
    probs = prediction_ui(predictor, x, engine)
    probabilities_ui(probs)
    engines_ui(predictor, x, probs, engine)
    feature_maps_ui(predictor, x, engine)


def main() -> None:
    st.set_page_config(page_title="Draw a digit · CNN From Scratch", page_icon="✏️",
                       layout="wide")
    header_ui()
    predictor, path, error = get_predictor()
    engine, stroke = sidebar_ui(predictor, path)
    if error is not None:
        st.error(error)
        st.button("Try again")  # a click reruns: a model file that is back gets loaded
        return
    if engine == "numpy" and not predictor.numpy_available():
        st.warning(f"The NumPy engine cannot run this model, using Keras instead: "
                   f"{predictor.numpy_error}")
        engine = "keras"
    left, right = st.columns([1, 1], gap="large")
    with left:
        source = st.radio("Input", ["Draw", "Upload"], key="source", horizontal=True,
                          label_visibility="collapsed")
        if source == "Draw":
            pixels = canvas_ui(stroke)
            x = None if pixels is None else to_mnist(pixels)
            prompt = EMPTY_PROMPT
        else:
            img, upload_error = upload_ui()
            if upload_error:
                st.error(upload_error)
            x = None if img is None else to_mnist(img)
            prompt = UPLOAD_PROMPT if img is None else BLANK_UPLOAD
    with right:
        results_ui(predictor, x, engine, prompt)


def _safe_main() -> None:
    try:
        main()
    except Exception as exc:  # the app never shows a traceback; it logs one
        log.exception("app error")
        st.error(f"Something went wrong ({type(exc).__name__}: {exc}). "
                 "Try again, or reload the page.")


if __name__ == "__main__":
    _safe_main()
