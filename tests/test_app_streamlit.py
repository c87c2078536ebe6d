"""The Streamlit app under AppTest: drawings injected through session state."""

import base64
import io
import re

import numpy as np
import pytest
from mnist_cnn.numerics import assert_close
from mnist_cnn.shapes import INPUT_SHAPE, NUM_CLASSES
from PIL import Image
from streamlit.testing.v1 import AppTest

from app.page_assets import RUN, STROKES
from tests._helpers_app import APP, TIMEOUT, render_digit

# The `app` and `model_path` fixtures are in conftest.py.


def _png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _draw(at, pixels):
    """What the canvas component sends after a stroke: its PNG as a data URL."""
    url = "data:image/png;base64," + base64.b64encode(_png(pixels)).decode()
    at.session_state["canvas"] = {"drawing": {"raw": {"objects": [{"type": "path"}],
                                                      "background": "#000000"},
                                              "data": url},
                                  "backgroundFit": None}
    return at.run()


def _texts(elements):
    return " ".join(str(e.value) for e in elements)


def test_empty_canvas_prompts_and_predicts_nothing(app):
    assert "Draw a digit" in _texts(app.info)
    assert len(app.metric) == 0
    assert not app.error


@pytest.mark.parametrize("digit, left, top, size, width", [
    (2, 20, 20, 120, 12), (7, 140, 120, 130, 14), (3, 40, 30, 210, 22), (0, 90, 60, 100, 10)])
def test_drawn_digit_is_predicted_with_probabilities(app, digit, left, top, size, width):
    at = _draw(app, render_digit(digit, left, top, size, width=width))
    assert not at.exception and not at.error
    [metric] = at.metric
    assert metric.label == "Prediction"
    assert metric.value == str(digit)
    probs = np.array(at.session_state["probabilities"])
    assert probs.shape == (NUM_CLASSES,)
    assert_close(np.float32(probs.sum()), np.float32(1), "app: probabilities sum to 1")
    assert int(probs.argmax()) == digit
    [bars] = [h for h in at.get("html") if 'class="digit-probs"' in h.proto.body]
    assert bars.proto.body.count('class="bar"') == NUM_CLASSES  # one bar per digit
    assert len(at.info) == 0


def _mark(at) -> tuple[str, int | None]:
    """The hidden mark that starts the answer: (run token, stroke count or None)."""
    [body] = [h.proto.body for h in at.get("html") if h.proto.body.startswith(f"<span {RUN}")]
    run = re.search(rf'{RUN}="(\w+)"', body).group(1)
    strokes = re.search(rf'{STROKES}="(\d+)"', body)
    return run, None if strokes is None else int(strokes.group(1))


def test_every_answer_starts_with_a_mark_naming_its_run_and_drawing(app):
    """What the page script waits for (app/page.js): in every state the answer carries
    a run token new in every run and, for the canvas, the strokes it read."""
    runs = [_mark(app)[0]]
    assert _mark(app)[1] == 0 and "Draw a digit" in _texts(app.info)    # empty canvas
    at = _draw(app, render_digit(7, 50, 50, 150))
    runs.append(_mark(at)[0])
    assert _mark(at)[1] == 1 and at.metric[0].value == "7"               # a drawing
    at.toggle(key="feature_maps").set_value(True).run()                   # another widget
    runs.append(_mark(at)[0])
    assert _mark(at)[1] == 1
    at = _draw(at, np.zeros((1200, 1200, 4), np.uint8))
    runs.append(_mark(at)[0])
    assert _mark(at)[1] == 1 and "too large" in _texts(at.error)         # unreadable
    at = _upload(at, "notes.png", b"not an image")
    runs.append(_mark(at)[0])
    assert _mark(at)[1] is None and "not a supported image" in _texts(at.error)  # upload
    assert len(set(runs)) == len(runs)


def test_reset_canvas_brings_back_the_prompt(app):
    at = _draw(app, render_digit(7, 50, 50, 150))
    assert at.metric[0].value == "7"
    at = _draw(at, np.zeros((280, 280, 4), np.uint8))  # "Reset canvas": all zero
    assert len(at.metric) == 0
    assert "Draw a digit" in _texts(at.info)


def test_numpy_engine_agrees(app):
    at = _draw(app, render_digit(4, 60, 40, 170, width=16))
    keras_probs = np.array(at.session_state["probabilities"])
    assert "engines agree" not in _texts(at.caption)  # computed only when asked for
    at.sidebar.radio(key="engine").set_value("numpy")
    at.toggle(key="compare").set_value(True)
    at.run()
    assert not at.exception
    caption = _texts(at.caption)
    if "Only the" in caption:
        pytest.skip("NumPy engine not available for this model")
    assert at.metric[0].value == "4"
    assert_close(np.asarray(at.session_state["probabilities"], np.float32),
                 keras_probs.astype(np.float32), "app: NumPy engine vs Keras probabilities")
    assert "engines agree" in caption


def test_feature_maps_are_computed_only_when_switched_on(app, monkeypatch):
    from mnist_cnn.predict import Predictor

    calls = []
    original = Predictor.feature_maps
    monkeypatch.setattr(Predictor, "feature_maps",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    at = _draw(app, render_digit(3, 60, 40, 170, width=16))
    assert calls == [] and at.metric[0].value == "3"
    at.toggle(key="feature_maps").set_value(True).run()
    assert not at.exception and calls
    assert "feature maps of layer" in " ".join(str(m.value) for m in at.markdown)


def _upload(at, name, data, mime="image/png"):
    at.radio(key="source").set_value("Upload").run()
    at.file_uploader(key="upload").upload(name, data, mime)
    return at.run()


def test_upload_photo_of_a_digit(app):
    paper = 255 - render_digit(1, 90, 40, 180, width=20, rgba=False)  # dark ink on paper
    at = _upload(app, "one.png", _png(paper))
    assert not at.exception and not at.error
    assert at.metric[0].value == "1"


@pytest.mark.parametrize("name, data, expected", [
    ("text.png", b"this is not an image", "not a supported image"),
    ("empty.png", b"", "empty"),
    ("digit.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>',
     "not a supported image"),
    ("blank.png", None, "looks blank"),
])
def test_bad_uploads_get_clear_messages(app, name, data, expected):
    if data is None:
        data = _png(np.full((60, 60), 255, np.uint8))
    at = _upload(app, name, data)
    assert not at.exception
    assert len(at.metric) == 0
    assert expected in _texts(at.error) + _texts(at.info)


def test_missing_model_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_CNN_MODEL", str(tmp_path / "nowhere.keras"))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    msg = _texts(at.error)
    assert "No model file" in msg and "train-keras" in msg and "cnn_model.keras" in msg
    assert len(at.metric) == 0


def test_corrupt_model_is_a_message_not_a_traceback(tmp_path, monkeypatch):
    bad = tmp_path / "corrupt.keras"
    bad.write_bytes(b"PK\x03\x04" + bytes(200))
    monkeypatch.setenv("MNIST_CNN_MODEL", str(bad))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    msg = _texts(at.error)
    assert "Could not" in msg and "train-keras" in msg


def test_numpy_engine_unavailable_falls_back_to_keras(tmp_path, monkeypatch):
    from mnist_cnn.backend import import_keras

    keras = import_keras()

    # tanh is not an activation the bridge maps onto the scratch network.
    model = keras.Sequential([keras.Input(INPUT_SHAPE),
                              keras.layers.Conv2D(4, 3, activation="tanh", name="conv1"),
                              keras.layers.Flatten(), keras.layers.Dense(NUM_CLASSES),
                              keras.layers.Softmax()])
    path = tmp_path / "tanh.keras"
    model.save(path)
    monkeypatch.setenv("MNIST_CNN_MODEL", str(path))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.sidebar.radio(key="engine").set_value("numpy")
    at = _draw(at.run(), render_digit(7, 50, 50, 150))
    assert not at.exception
    warning = _texts(at.warning)
    assert "Keras engine instead" in warning and "cannot run this model" in warning
    assert len(at.metric) == 1 and at.metric[0].value.isdigit()


def test_oversized_canvas_payload_is_refused(app):
    # A crafted client sending a huge "drawing" gets a message, not a decode.
    at = _draw(app, np.zeros((1200, 1200, 4), np.uint8))
    assert not at.exception
    assert "too large" in _texts(at.error)
    assert len(at.metric) == 0


def test_model_replaced_while_running_then_restored(model_path, tmp_path, monkeypatch):
    import os
    import shutil

    live = tmp_path / "live.keras"
    shutil.copyfile(model_path, live)
    monkeypatch.setenv("MNIST_CNN_MODEL", str(live))
    at = _draw(AppTest.from_file(APP, default_timeout=TIMEOUT).run(),
               render_digit(7, 50, 50, 150))
    assert at.metric[0].value == "7"
    good = live.read_bytes()
    mtime = live.stat().st_mtime_ns

    live.write_bytes(b"PK\x03\x04" + bytes(100))            # corrupted in place
    os.utime(live, ns=(mtime + 10**9, mtime + 10**9))
    at.run()
    assert not at.exception and len(at.metric) == 0
    assert "Could not" in _texts(at.error)

    live.unlink()                                             # deleted
    at.run()
    assert "No model file" in _texts(at.error)

    live.write_bytes(good)                                    # restored: no restart needed
    os.utime(live, ns=(mtime + 2 * 10**9, mtime + 2 * 10**9))
    at.run()
    assert not at.error
    assert "Draw a digit" in _texts(at.info)  # the canvas is back (its drawing was dropped)
    at = _draw(at, render_digit(7, 50, 50, 150))
    assert at.metric[0].value == "7"


def test_no_costly_cleanup_after_each_run(app):
    """Streamlit's post-run keras.backend.clear_session() and full garbage collection
    cost more than a stroke's whole run (benchmarks/load.py); the app turns both off."""
    from pathlib import Path

    from streamlit.runtime.scriptrunner import script_runner

    assert script_runner._clean_problem_modules.__name__ == "_close_matplotlib_figures"
    config = (Path(APP).parents[1] / ".streamlit" / "config.toml").read_text()
    assert "\npostScriptGC = false\n" in config
