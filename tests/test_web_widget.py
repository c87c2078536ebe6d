"""The book's in-page canvas: the export, and the network and preprocessing in JavaScript
checked against the Python library in real Chromium (the drawing itself in the built
book is checked in tests/test_web_page.py)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from mnist_cnn import cli, preprocess
from mnist_cnn.canvas import CANVAS, simulate_canvas
from mnist_cnn.numerics import assert_close
from mnist_cnn.preprocess import to_mnist
from mnist_cnn.web import (
    FORMAT,
    MAX_LOSS_POINTS,
    WEB_LAYERS,
    WEIGHTS_JS,
    load_export,
    read_weights_js,
)

from tests._helpers_app import stroke_points
from tests._helpers_web import (
    draw_mouse,
    fresh_export,
    make_page,
    open_page,
    wait_state,
    widget_result,
)

REPO = Path(__file__).resolve().parents[1]
N_FORWARD = 1000      # test images through the JS network
N_CANVAS = 240        # canvas-simulated digits through the JS preprocessing


@pytest.fixture(scope="module")
def export_dir(model_path, tmp_path_factory):
    return fresh_export(model_path, tmp_path_factory.mktemp("web"))


@pytest.fixture(scope="module")
def exported(export_dir):
    """(manifest, the NumPy engine running exactly the exported weights)."""
    return load_export(export_dir)


@pytest.fixture(scope="module")
def page(browser, export_dir, tmp_path_factory):
    """The widget, opened from disk, its network loaded."""
    url = make_page(tmp_path_factory.mktemp("page"), export_dir / WEIGHTS_JS)
    page, errors, requests = open_page(browser, url)
    assert wait_state(page, "ready", "error") == "ready", page.inner_text("body")
    yield page
    assert errors == []
    assert all(r.startswith("file://") for r in requests), requests
    page.context.close()


# ------------------------------------------------------------------------ export


def test_manifest_describes_the_exported_weights(export_dir, exported, model_path):
    manifest, net = exported
    on_disk = json.loads((export_dir / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["format"] == FORMAT
    assert {layer["class"] for layer in manifest["layers"]} <= set(WEB_LAYERS)
    assert "BatchNormalization" not in json.dumps(manifest["layers"])  # folded by the bridge
    assert manifest["parameters"] == net.count_params()
    size = {"float16": 2, "float32": 4}[manifest["dtype"]]
    assert manifest["weights_bytes"] == size * manifest["parameters"]
    # float16 only when it loses at most MAX_LOSS_POINTS points, both measured on the
    # validation split: the test set chooses nothing
    loss = (manifest["validation_accuracy_float32"]
            - manifest["validation_accuracy_float16"]) * 100
    assert (manifest["dtype"] == "float16") == (loss <= MAX_LOSS_POINTS + 1e-9)
    assert manifest["validation_images"] == 5_000
    assert not any(key.startswith("test_accuracy_") for key in manifest)
    # the test accuracy recorded is the final figure of exactly what ships
    assert manifest["test_accuracy"] > 0.98
    assert manifest["test_images"] == 10_000


@pytest.mark.slow   # 15,000 digits through the NumPy engine
def test_recorded_accuracies_are_those_of_the_shipped_weights(exported, mnist):
    from mnist_cnn.data import prepare_images, split_validation

    manifest, net = exported
    (x_train, y_train), (x_test, y_test) = mnist
    _, (x_val, y_val) = split_validation(x_train, y_train)
    shipped = manifest["dtype"]
    val = np.mean(net.predict(prepare_images(x_val), batch_size=500) == y_val)
    assert val == pytest.approx(manifest[f"validation_accuracy_{shipped}"], abs=1e-12)
    test = np.mean(net.predict(prepare_images(x_test), batch_size=500) == y_test)
    assert test == pytest.approx(manifest["test_accuracy"], abs=1e-12)


def test_corrupt_weights_are_refused_in_python(export_dir, tmp_path):
    text = (export_dir / WEIGHTS_JS).read_text()
    i = text.index('"data":"') + 100
    bad = tmp_path / WEIGHTS_JS
    bad.write_text(text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1:])
    with pytest.raises(ValueError, match="SHA-256"):
        read_weights_js(bad)


def test_export_refuses_a_model_the_bridge_cannot_convert(tmp_path, capsys):
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3),
                              keras.layers.AveragePooling2D(2), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    path = tmp_path / "avgpool.keras"
    model.save(path)
    assert cli.main(["export-web", "--model", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "cannot export avgpool.keras for the web" in err and "AveragePooling2D" in err
    assert not (tmp_path / "out").exists()


def test_export_of_a_missing_model_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["export-web", "--model", str(tmp_path / "nope.keras")]) == 1
    assert "no model file" in capsys.readouterr().err


def test_make_exports_when_the_export_is_missing_or_older_than_the_model(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    target = tmp_path / WEIGHTS_JS

    def plans_an_export() -> bool:
        out = subprocess.run(["make", "-n", "web-export", f"WEB_EXPORT={target}"],
                             cwd=REPO, capture_output=True, text=True, check=True).stdout
        return f"export-web --model models/cnn_model.keras --out {tmp_path}" in out

    assert plans_an_export()                      # missing
    target.write_text("")
    later = time.time() + 3600
    os.utime(target, (later, later))
    assert not plans_an_export()                  # newer than the model and the exporter
    os.utime(target, (0, 0))
    assert plans_an_export()                      # older


# ----------------------------------------------------------------- in Chromium


@pytest.mark.browser
@pytest.mark.slow
def test_js_forward_pass_matches_numpy(page, exported, mnist):
    _, net = exported
    _, (x_test, _) = mnist
    x = x_test[:N_FORWARD].astype(np.float32) / 255.0
    expected = net.predict_proba(x[..., None])
    got = []
    for i in range(0, N_FORWARD, 250):
        batch = base64.b64encode(x[i:i + 250].tobytes()).decode()
        got += page.evaluate("""(b64) => MnistCnn.ready.then((net) => {
            const f = new Float32Array(Uint8Array.from(atob(b64), c => c.charCodeAt(0)).buffer);
            const out = [];
            for (let i = 0; i < f.length / 784; i++)
                out.push(MnistCnn.forward(net, f.subarray(784 * i, 784 * (i + 1))).probabilities);
            return out;
        })""", batch)
    got = np.array(got)
    assert got.shape == (N_FORWARD, 10)
    print(f"JS vs NumPy on {N_FORWARD} test images: same digit "
          f"{np.mean(got.argmax(1) == expected.argmax(1)):.2%}, "
          f"max abs probability diff {np.abs(got - expected).max():.2e}")
    np.testing.assert_array_equal(got.argmax(1), expected.argmax(1))
    assert_close(got.astype(np.float32), expected.astype(np.float32),
                 "forward.js vs NumPy: probabilities")


def _js_read_canvases(page, rgba: np.ndarray):
    """Paint each RGBA (N, 280, 280, 4) image onto a canvas in the page, read it back
    as the widget does, and run the JS preprocessing and network: (images, digits)."""
    images, digits = [], []
    for i in range(0, len(rgba), 20):
        batch = base64.b64encode(rgba[i:i + 20].tobytes()).decode()
        out = page.evaluate("""([b64, size]) => MnistCnn.ready.then((net) => {
            const all = Uint8ClampedArray.from(atob(b64), c => c.charCodeAt(0));
            const canvas = document.createElement("canvas");
            canvas.width = canvas.height = size;
            const ctx = canvas.getContext("2d", {willReadFrequently: true});
            const n = size * size * 4, out = [];
            for (let k = 0; k < all.length / n; k++) {
                ctx.clearRect(0, 0, size, size);
                ctx.putImageData(new ImageData(all.slice(k * n, (k + 1) * n), size, size), 0, 0);
                const r = MnistCnn.toMnist(ctx.getImageData(0, 0, size, size).data, size, size);
                out.push(r.image ? [Array.from(r.image), MnistCnn.forward(net, r.image).digit]
                                 : [null, null]);
            }
            return out;
        })""", [batch, CANVAS])
        for image, digit in out:
            images.append(image)
            digits.append(digit)
    return images, digits


@pytest.mark.browser
@pytest.mark.slow
def test_js_preprocessing_matches_to_mnist(page, exported, mnist):
    """Digits pasted onto a 280x280 canvas at random sizes and places: as the widget's
    canvas holds them (white strokes, opacity = ink), and half of them as opaque
    gray pictures (so the border-median background rule is exercised too)."""
    _, net = exported
    _, (x_test, _) = mnist
    rng = np.random.default_rng(20)
    gray = np.stack([simulate_canvas(x_test[i], rng) for i in range(N_CANVAS)])
    rgba = np.zeros(gray.shape + (4,), np.uint8)
    half = N_CANVAS // 2
    rgba[:half, ..., :3] = 255
    rgba[:half, ..., 3] = gray[:half]
    rgba[half:, ..., :3] = gray[half:, ..., None]
    rgba[half:, ..., 3] = 255
    py_images = [to_mnist(img) for img in rgba]
    assert all(img is not None for img in py_images)
    py_digits = net.predict(np.stack(py_images)[..., None])
    js_images, js_digits = _js_read_canvases(page, rgba)
    assert None not in js_digits
    same = np.mean(np.array(js_digits) == py_digits)
    diff = np.abs(np.array(js_images, np.float32).reshape(-1, 28, 28) - np.stack(py_images))
    print(f"JS vs to_mnist on {N_CANVAS} canvas digits: same digit {same:.2%}, "
          f"mean abs pixel diff {diff.mean():.2e}, max {diff.max():.2e}")
    assert same >= 0.995
    assert diff.mean() <= 0.02


def _rules_cases():
    """Pictures that take each of to_mnist's branches: tiny digits (enlarged with the
    bilinear filter), dark ink on light paper, opaque content with its own contrast on
    a transparent margin, a blank canvas and one without enough contrast (no ink)."""
    from mnist_cnn.canvas import render_digit

    cases = {}
    for d, size in ((1, 9), (4, 14), (7, 17)):
        cases[f"tiny {d}"] = render_digit(d, 100, 100, size, width=3)
    # The app's widest brush on a small digit: strokes bolder than THICK_FRACTION, thinned.
    cases["thick brush"] = render_digit(7, 15, 15, 90, width=40)
    paper = 255 - render_digit(3, 40, 30, 200, width=14, rgba=False)
    cases["paper"] = np.dstack([paper] * 3 + [np.full_like(paper, 255)])
    photo = np.zeros((CANVAS, CANVAS, 4), np.uint8)
    photo[40:240, 40:240, :3] = 200
    photo[40:240, 40:240, 3] = 255
    photo[..., :3] -= (render_digit(2, 70, 60, 150, width=16, rgba=False) // 2).astype(
        np.uint8)[..., None]
    cases["photo on transparent margin"] = photo
    cases["blank"] = np.zeros((CANVAS, CANVAS, 4), np.uint8)
    faint = np.zeros((CANVAS, CANVAS, 4), np.uint8)
    faint[..., 3] = 255
    faint[100:150, 100:150, :3] = 8
    cases["too faint"] = faint
    return cases


def test_js_preprocessing_uses_the_python_constants():
    """preprocess.js holds its own copy of to_mnist's constants: they must agree."""
    js = (REPO / "book" / "_static" / "digit_widget" / "preprocess.js").read_text()
    consts = dict(re.findall(r"\b([A-Z][A-Z_]+) = ([\d.]+)\b", js))
    names = ["SIZE", "BOX", "CENTRE", "INK_THRESHOLD", "MIN_CONTRAST", "THICK_FRACTION",
             "STROKE_FRACTION", "UNIFORM_STROKE"]
    assert {n: float(consts[n]) for n in names} == {
        n: float(getattr(preprocess, n)) for n in names}


@pytest.mark.browser
def test_js_preprocessing_follows_every_rule_of_to_mnist(page):
    cases = _rules_cases()
    js_images, _ = _js_read_canvases(page, np.stack(list(cases.values())))
    for (name, img), js in zip(cases.items(), js_images, strict=True):
        py = to_mnist(img)
        if py is None:
            assert js is None, name
        else:
            assert js is not None, name
            assert_close(np.array(js, np.float32).reshape(28, 28), py,
                         f"preprocess.js vs to_mnist: {name}")


@pytest.mark.browser
def test_widget_reads_a_drawing_and_clears(page):
    draw_mouse(page, stroke_points(7, 70, 50, 170))
    assert wait_state(page, "predicted", "too-small", "empty") == "predicted"
    digit, probs = widget_result(page)
    assert digit == 7 and len(probs) == 10
    assert_close(sum(probs), 1.0, "widget: probabilities sum to 1 (float64 softmax)")
    page.get_by_role("button", name="Clear").click()
    assert wait_state(page, "ready") == "ready"
    assert widget_result(page) == (None, None)


@pytest.mark.browser
def test_widget_says_why_a_tiny_stroke_is_not_read(page):
    page.get_by_role("button", name="Clear").click()
    draw_mouse(page, [[(140, 140), (146, 143)]])
    assert wait_state(page, "too-small", "predicted") == "too-small"
    assert widget_result(page) == (None, None)
    assert "Too small" in page.inner_text('[data-testid="digit-widget"]')


@pytest.mark.browser
@pytest.mark.parametrize("case", ["missing", "corrupt", "not-base64"])
def test_bad_weights_show_a_message_and_the_page_still_works(browser, export_dir, tmp_path,
                                                            case):
    text = (export_dir / WEIGHTS_JS).read_text()
    i = text.index('"data":"') + 200
    weights_text = {"missing": None,
                    "corrupt": text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1:],
                    "not-base64": text[:i] + "%" + text[i + 1:]}[case]
    url = make_page(tmp_path, weights_text=weights_text)
    page, errors, _ = open_page(browser, url)
    try:
        assert wait_state(page, "ready", "error") == "error"
        message = page.inner_text('[data-testid="digit-widget"] .dw-message')
        expected = {"missing": "weights (weights.js) are missing", "corrupt": "SHA-256",
                    "not-base64": "base64"}[case]
        assert expected in message and "The rest of the page works" in message
        assert page.inner_text("#rest") == "The rest of the page"
        # the only console error allowed is the browser's own note of the missing file
        assert all("ERR_FILE_NOT_FOUND" in e or "Failed to load" in e for e in errors), errors
        if case != "missing":
            assert errors == []
    finally:
        page.context.close()
