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
from mnist_cnn.canvas import BRUSH, CANVAS, MAX_CANVAS, simulate_canvas
from mnist_cnn.data import prepare_images
from mnist_cnn.numerics import assert_close, tolerance
from mnist_cnn.preprocess import to_mnist
from mnist_cnn.web import (
    FORMAT,
    MAX_LOSS_POINTS,
    WEB_LAYERS,
    WEIGHTS_JS,
    check_manifest,
    load_export,
    read_weights_js,
)

from app.browser_driver import draw_strokes, pen_events
from tests._helpers_app import stroke_points
from tests._helpers_web import (
    ROOT,
    draw_mouse,
    fresh_export,
    make_page,
    open_page,
    wait_state,
    widget_result,
)

REPO = Path(__file__).resolve().parents[1]
N_FORWARD = 1000      # test images through the JS network
N_FULL = 50           # of them, compared value by value at every layer
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
    # the drawing surface the page gives the reader: the app's, from mnist_cnn.canvas
    assert manifest["canvas"] == {"size": CANVAS, "brush": BRUSH}
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
    from mnist_cnn.data import split_validation

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


def _without_canvas(manifest):
    del manifest["canvas"]


def _old_format(manifest):            # an export from before the manifest gave the surface
    del manifest["canvas"]
    manifest["format"] = "mnist_cnn-web/2"


def _export_variant(export_dir: Path, folder: Path, change) -> Path:
    """A copy of the export in ``folder``, its manifest altered by ``change`` (in
    place), its weights the same; returns its weights.js."""
    from mnist_cnn.web import _write_export

    manifest, data = read_weights_js(export_dir / WEIGHTS_JS)
    change(manifest)
    _write_export(folder, manifest["model"], manifest, data)
    return folder / WEIGHTS_JS


UNUSABLE = "no usable drawing surface (canvas.size and canvas.brush): the "


@pytest.mark.parametrize(("change", "says"), [
    (_without_canvas, "no drawing surface"),
    (_old_format, "a mnist_cnn-web/2 export, this library reads " + FORMAT),
    (lambda m: m["canvas"].update(size=0), UNUSABLE + "size"),
    (lambda m: m["canvas"].update(size="280"), UNUSABLE + "size"),
    (lambda m: m["canvas"].update(size=MAX_CANVAS + 1), UNUSABLE + "size"),
    (lambda m: m["canvas"].pop("brush"), UNUSABLE + "brush"),
    (lambda m: m["canvas"].update(brush=float("inf")), UNUSABLE + "brush"),
    (lambda m: m["canvas"].update(brush=CANVAS / 2), UNUSABLE + "brush"),
], ids=["no-canvas", "old-format", "size-0", "size-text", "size-huge", "no-brush",
        "brush-infinite", "brush-too-wide"])
def test_an_export_without_its_drawing_surface_is_refused_in_python(export_dir, tmp_path,
                                                                    change, says):
    path = _export_variant(export_dir, tmp_path, change)
    with pytest.raises(ValueError, match=re.escape(says)):
        read_weights_js(path)
    with pytest.raises(ValueError, match=re.escape(says)):
        load_export(tmp_path)
    manifest, _ = read_weights_js(export_dir / WEIGHTS_JS)
    check_manifest(manifest)                               # the real one passes


def test_ensure_export_exports_only_where_there_is_none(export_dir, model_path, tmp_path,
                                                       monkeypatch, capsys):
    """A notebook copy outside the build exports the served model once; an export
    that is there is left alone."""
    from mnist_cnn import web

    before = (export_dir / WEIGHTS_JS).stat().st_mtime_ns
    assert web.ensure_export(export_dir) == export_dir
    assert (export_dir / WEIGHTS_JS).stat().st_mtime_ns == before
    monkeypatch.setenv("MNIST_CNN_MODEL", str(model_path))       # the served model
    out = tmp_path / "digit_widget"
    assert web.ensure_export(out, progress=True) == out
    assert "exporting the served model" in capsys.readouterr().out
    manifest, data = read_weights_js(out / WEIGHTS_JS)
    reference, reference_data = read_weights_js(export_dir / WEIGHTS_JS)
    assert manifest["model"] == model_path.name
    assert data == reference_data                   # the same model's weights, exported


def test_the_page_reads_the_format_the_library_writes():
    """widget.js names the export format it reads, the one mnist_cnn.web writes, and
    the largest surface it accepts, the library's."""
    js = (REPO / "book" / "_static" / "digit_widget" / "widget.js").read_text()
    assert re.findall(r'const FORMAT = "([^"]+)"', js) == [FORMAT]
    assert re.findall(r"const MAX_CANVAS = (\d+);", js) == [str(MAX_CANVAS)]


@pytest.mark.parametrize(("size", "brush", "wrong"), [
    (CANVAS, BRUSH, None), (float(CANVAS), BRUSH, None), (1, 0.25, None),
    (MAX_CANVAS, MAX_CANVAS / 4, None), (CANVAS, CANVAS / 4, None),
    (0, BRUSH, "size"), (MAX_CANVAS + 1, BRUSH, "size"), (CANVAS + 0.5, BRUSH, "size"),
    (True, 0.25, "size"), ("280", BRUSH, "size"), (float("nan"), BRUSH, "size"),
    (CANVAS, 0, "brush"), (CANVAS, -BRUSH, "brush"), (CANVAS, CANVAS / 4 + 0.01, "brush"),
    (CANVAS, float("inf"), "brush"), (CANVAS, float("nan"), "brush"), (CANVAS, None, "brush"),
    (CANVAS, True, "brush"), (np.int64(CANVAS), np.float32(BRUSH), None),
    (2 ** 70, BRUSH, "size"), (np.bool_(True), 0.25, "size"), (CANVAS, 2 ** 70, "brush"),
])
def test_the_surface_rule(size, brush, wrong):
    """A whole size from 1 to MAX_CANVAS pixels, a brush above 0 and at most a quarter
    of it (the pages apply the same rule: the browser tests below)."""
    from mnist_cnn.canvas import surface_problem

    problem = surface_problem(size, brush)
    assert problem is None if wrong is None else problem.startswith(f"the {wrong} must")


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


def test_export_refuses_layers_the_page_cannot_run(tmp_path, capsys):
    """A NumPy model the bridge needs not convert, with a 3x5 kernel and a dense layer
    without bias: both named, nothing written."""
    from mnist_cnn.scratch import Conv2D, Dense, Flatten, ReLU, Sequential

    net = Sequential([Conv2D(4, (3, 5), name="wide"), ReLU(), Flatten(),
                      Dense(10, use_bias=False, name="nobias")], input_shape=(28, 28, 1))
    path = net.save(tmp_path / "odd.npz")
    assert cli.main(["export-web", "--model", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "cannot export odd.npz for the web" in err
    assert "'wide' has a 3x5 kernel" in err and "'nobias' has no bias" in err
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


# forward.js runs every image through every layer, keeping each layer's output; one
# call returns, for every (image, layer), the largest |value| and a projection on
# random signs, and for the first N_FULL images every value (the page cannot hand
# back every value of 1,000 images: about 430 MB for the production model).
_JS_EVERY_LAYER = """([images, signs, nFull]) => MnistCnn.ready.then((net) => {
    const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const toBase64 = (arrays) => {
        const all = new Uint8Array(arrays.reduce((n, a) => n + a.byteLength, 0));
        let at = 0, text = "";
        for (const a of arrays) { all.set(new Uint8Array(a.buffer), at); at += a.byteLength; }
        for (let i = 0; i < all.length; i += 8192)
            text += String.fromCharCode.apply(null, all.subarray(i, i + 8192));
        return btoa(text);
    };
    const x = new Float32Array(bytes(images).buffer);
    const names = net.layers.map((layer) => layer.name), sign = {};
    for (const name of names) sign[name] = new Int8Array(bytes(signs[name]).buffer);
    const scale = [], projection = [], probabilities = [], full = names.map(() => []);
    let shapes = null;
    for (let i = 0; i < x.length / 784; i++) {
        const out = MnistCnn.forward(net, x.subarray(784 * i, 784 * (i + 1)));
        const acts = names.map((name) => out.outputs[name]);
        shapes = acts.map((a) => a.shape);
        probabilities.push(out.probabilities);
        const top = [], sum = [];
        acts.forEach((a, k) => {
            const d = a.data, sg = sign[names[k]];
            let m = 0, s = 0;
            for (let j = 0; j < d.length; j++) {
                m = Math.max(m, Math.abs(d[j]));
                s += d[j] * sg[j];
            }
            top.push(m);
            sum.push(s);
        });
        scale.push(top);
        projection.push(sum);
        if (i < nFull) acts.forEach((a, k) => full[k].push(Float32Array.from(a.data)));
    }
    return { names, shapes, scale, projection, probabilities, full: full.map(toBase64) };
})"""


def _numpy_summaries(net, x, signs, n_full, batch=100):
    """NumPy's side of _JS_EVERY_LAYER: per layer, (N,) largest |value|, (N,) projection
    (float64) and the first ``n_full`` outputs."""
    scale, projection, full = {}, {}, {}
    for i in range(0, len(x), batch):
        for name, out in net.activations(x[i:i + batch]):
            flat = out.reshape(len(out), -1)
            scale.setdefault(name, []).append(np.abs(flat).max(axis=1))
            projection.setdefault(name, []).append(flat.astype(np.float64) @ signs[name])
            if i < n_full:
                full.setdefault(name, []).append(flat[:n_full - i])
    return ({k: np.concatenate(v) for k, v in scale.items()},
            {k: np.concatenate(v) for k, v in projection.items()},
            {k: np.concatenate(v) for k, v in full.items()})


def _check_every_layer(page, net, x, n_full, seed=0):
    """The JS activations of every layer equal NumPy's (the scratch engine running the
    exported weights), by the course's rule, on every image of ``x``.

    The rule (:func:`mnist_cnn.numerics.assert_close`): both store float32, so the two
    may differ by ULPS float32 roundings (1.2e-4) relative to the largest |value| of
    the layer over the batch. JS accumulates each sum in float64 and rounds once, NumPy
    sums float32 in its BLAS's order: a few roundings apart on any CPU, far inside it.
    For the first ``n_full`` images every value is compared. For all of them, two
    numbers per image and layer (every value of 1,000 images would be 430 MB): the
    largest |value| (it moves by at most the largest difference) and the sum of the
    values times random signs. The rule holds each of the n differences within
    d = tol * the image's largest |value|, so with signs drawn independently of them,
    the sum's difference exceeds 8 d sqrt(n) with probability below 2 exp(-32)
    (Hoeffding's inequality) however the rounding falls: a wrong layer, index or
    weight fails it at once, and so does any single value off by more than that.
    """
    rng = np.random.default_rng(seed)
    shapes = {name: out.shape[1:] for name, out in net.activations(x[:1])}
    sizes = {name: int(np.prod(shape)) for name, shape in shapes.items()}
    signs = {name: rng.choice(np.array([-1, 1], np.int8), n) for name, n in sizes.items()}
    js = page.evaluate(_JS_EVERY_LAYER, [
        base64.b64encode(x.astype(np.float32).tobytes()).decode(),
        {name: base64.b64encode(s.tobytes()).decode() for name, s in signs.items()}, n_full])
    names = [layer.name for layer in net.layers]
    assert js["names"] == names
    scale, projection, full = _numpy_summaries(net, x, {k: v.astype(np.float64)
                                                        for k, v in signs.items()}, n_full)
    js_scale, js_projection = np.array(js["scale"]), np.array(js["projection"])
    tol, worst_full = tolerance(np.float32), 0.0
    for k, name in enumerate(names):
        assert tuple(js["shapes"][k]) == shapes[name], name
        js_full = np.frombuffer(base64.b64decode(js["full"][k]), np.float32).reshape(
            (n_full, *shapes[name]))
        worst_full = max(worst_full, assert_close(
            js_full, full[name].reshape(js_full.shape),
            f"forward.js vs NumPy: {name}, every value of {n_full} images"))
        assert_close(js_scale[:, k], scale[name],
                     f"forward.js vs NumPy: {name}, largest |value| of {len(x)} images")
        bound = 8 * tol * np.maximum(js_scale[:, k], scale[name]) * np.sqrt(sizes[name])
        diff = np.abs(js_projection[:, k] - projection[name])
        bad = np.flatnonzero(~(diff <= bound))          # NaN fails too
        assert bad.size == 0, (
            f"forward.js vs NumPy: {name}: on image {bad[0]} a sum on random signs differs "
            f"by {diff[bad[0]]:.3g} > {bound[bad[0]]:.3g}")
    probs = np.array(js["probabilities"])
    expected = net.predict_proba(x)
    np.testing.assert_array_equal(probs.argmax(1), expected.argmax(1))
    assert_close(probs.astype(np.float32), expected, "forward.js vs NumPy: probabilities")
    print(f"forward.js vs NumPy, {len(names)} layers: largest relative error over every "
          f"value of {n_full} images {worst_full:.2e} (tolerance {tol:.1e})")
    return len(names)


@pytest.mark.browser
@pytest.mark.slow
def test_js_forward_pass_matches_numpy_at_every_layer(page, exported, mnist):
    _, net = exported
    _, (x_test, _) = mnist
    x = prepare_images(x_test[:N_FORWARD])
    layers = _check_every_layer(page, net, x, N_FULL)
    print(f"JS vs NumPy on {N_FORWARD} test images: {layers} layers equal")


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


# ------------------------------------------------ the network, layer by layer, in the page


@pytest.fixture(scope="module")
def second_export(tmp_path_factory):
    """A second architecture, exported by the same command: a from-scratch network
    (untrained: what is checked is the page's arithmetic and geometry, not accuracy)
    with two convolutions, not four: 5x5 kernels moving 2 pixels at a time, "same"
    padding, an overlapping pooling."""
    from mnist_cnn.scratch import Conv2D, Dense, Flatten, MaxPooling2D, ReLU, Sequential

    folder = tmp_path_factory.mktemp("second")
    net = Sequential([
        Conv2D(4, 5, strides=2, padding="same", name="wide"), ReLU(name="relu_wide"),
        MaxPooling2D(2, name="pool"),
        Conv2D(6, 3, padding="same", name="narrow"), ReLU(name="relu_narrow"),
        MaxPooling2D(3, strides=1, name="overlap"), Flatten(name="flat"),
        Dense(16, name="hidden"), ReLU(name="relu_hidden"), Dense(10, name="scores"),
    ], seed=3)
    model = net.save(folder / "second.npz")
    assert cli.main(["export-web", "--model", str(model), "--out", str(folder / "web")]) == 0
    return folder / "web"


@pytest.fixture(scope="module")
def second_page(browser, second_export, tmp_path_factory):
    """The widget running the second architecture, opened from disk, on a touch screen."""
    url = make_page(tmp_path_factory.mktemp("page2"), second_export / WEIGHTS_JS)
    page, errors, requests = open_page(browser, url, has_touch=True)
    assert wait_state(page, "ready", "error") == "ready", page.inner_text("body")
    yield page
    assert errors == []
    assert all(r.startswith("file://") for r in requests), requests
    page.context.close()


@pytest.mark.browser
def test_js_matches_numpy_at_every_layer_of_a_second_architecture(second_page, second_export,
                                                                  mnist):
    _, net = load_export(second_export)
    _, (x_test, _) = mnist
    x = prepare_images(x_test[:N_FORWARD])
    assert _check_every_layer(second_page, net, x, N_FULL) == len(net.layers)


def _views(page):
    return dict(page.eval_on_selector_all(
        f"{ROOT} [data-layer]", "els => els.map(e => [e.dataset.layer, +e.dataset.updated])"))


@pytest.mark.browser
@pytest.mark.parametrize("which", ["page", "second_page"])
def test_one_view_per_layer_of_the_manifest(request, which):
    page = request.getfixturevalue(which)
    export = request.getfixturevalue("export_dir" if which == "page" else "second_export")
    manifest, net = load_export(export)
    names = [layer["name"] for layer in manifest["layers"]]
    assert sorted(_views(page)) == sorted(["input", *names])        # one each, no other
    channels, layers = 1, {layer["name"]: (i, layer) for i, layer in enumerate(manifest["layers"])}
    for name, out in net.activations(np.zeros((1, 28, 28, 1), np.float32)):
        caption = page.inner_text(f'{ROOT} [data-layer="{name}"] figcaption')
        assert caption.startswith(name)
        i, layer = layers[name]
        if layer["class"] == "Conv2D":   # a filter spans every channel it is given
            kh, k = layer["kernel_size"]          # the layer's config: (height, width)
            assert kh == k
            size = f"{k}×{k}" + (f"×{channels}" if channels > 1 else "")
            assert f"{layer['filters']} filters of {size}" in caption, caption
            follows = manifest["layers"][i + 1]["class"] if i + 1 < len(layers) else None
            assert ("before ReLU" in caption) == (follows == "ReLU"), caption
        if out.ndim == 4:
            channels = out.shape[-1]
        if out.ndim == 4:                # an image: its maps, with the shape NumPy gives
            _, h, w, c = out.shape
            assert f"{c} maps of {h}×{w}" in caption
            label = page.get_attribute(f'{ROOT} [data-layer="{name}"] canvas', "aria-label")
            assert label.startswith(caption) and "arrow keys" in label


def _pad_box(page):
    page.locator(f"{ROOT} canvas").first.scroll_into_view_if_needed()
    return page.locator(f"{ROOT} canvas").first.bounding_box()


_ALL_GREW = """([root, before]) => Array.from(document.querySelectorAll(root + " [data-layer]"))
    .every((e) => +e.dataset.updated > before[e.dataset.layer])
    && document.querySelector(root).dataset.digit !== undefined"""


@pytest.mark.browser
def test_every_view_updates_while_the_mouse_draws(page):
    page.get_by_role("button", name="Clear").click()
    wait_state(page, "ready")
    before = _views(page)
    draw_strokes(page, _pad_box(page), [[(140, 30 + 4 * i) for i in range(55)]],
                 hold=True)                                     # a 1, pen still down
    page.wait_for_function(_ALL_GREW, arg=[ROOT, before])
    assert page.eval_on_selector(ROOT, "el => el.dataset.state") == "predicted"
    page.mouse.up()
    assert wait_state(page, "predicted") == "predicted"
    assert widget_result(page)[0] == 1
    # the pen-up reading is announced politely
    assert "reads a 1" in page.inner_text(f'{ROOT} [role="status"]')


@pytest.mark.browser
def test_every_view_updates_while_a_finger_draws(second_page):
    page = second_page
    page.get_by_role("button", name="Clear").click()
    wait_state(page, "ready")
    before = _views(page)
    box = _pad_box(page)
    points = [(CANVAS / 2, CANVAS * (0.1 + i / 70)) for i in range(56)]
    cdp = page.context.new_cdp_session(page)
    try:
        for method, args in pen_events(box, [points], touch=True, hold=True):
            getattr(cdp, method)(*args)
        page.wait_for_function(_ALL_GREW, arg=[ROOT, before])      # finger still down
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    finally:
        cdp.detach()
    assert wait_state(page, "predicted") == "predicted"


# (page, layer, map, row, column, the layer's map width, the receptive field's top, left
# and size): a unit (y, x) sees input rows start + y * jump ... + size - 1, from the
# kernels, strides and padding the layers before it have.
_INSPECT = [
    # conv1 3x3: size 3, jump 1, start 0
    ("page", "conv1", 0, 10, 12, 26, 10, 12, 3),
    # conv1, conv2 (3x3 each), pool1 2x2/2: size 3 + 2 + 1 = 6, jump 2, start 0
    ("page", "pool1", 3, 5, 4, 12, 10, 8, 6),
    # wide 5x5/2 "same" (28 -> 14 pads 3 pixels, 1 before): size 5, jump 2, start -1
    ("second_page", "wide", 0, 0, 0, 14, -1, -1, 5),
    # wide, pool 2x2/2 (5 + 1 * 2 = 7, jump 4), narrow 3x3 "same" (7 -> 7 pads 1
    # before: 7 + 2 * 4 = 15, start -1 - 4 = -5)
    ("second_page", "relu_narrow", 2, 3, 1, 7, 7, -1, 15),
    # then overlap 3x3/1: 15 + 2 * 4 = 23, jump 4, start -5
    ("second_page", "overlap", 1, 2, 3, 5, 3, 7, 23),
]


@pytest.mark.browser
@pytest.mark.parametrize(("which", "layer", "c", "y", "x", "width", "top", "left", "size"),
                         _INSPECT, ids=[f"{p[0]}-{p[1]}" for p in _INSPECT])
def test_pointing_at_a_unit_shows_its_kernel_and_receptive_field(
        request, which, layer, c, y, x, width, top, left, size):
    page = request.getfixturevalue(which)
    manifest, net = load_export(request.getfixturevalue(
        "export_dir" if which == "page" else "second_export"))
    if layer not in [e["name"] for e in manifest["layers"]]:
        pytest.skip(f"{manifest['model']} is not the committed model (no layer {layer})")
    page.get_by_role("button", name="Clear").click()
    canvas = page.locator(f'{ROOT} [data-layer="{layer}"] canvas')
    canvas.scroll_into_view_if_needed()
    box, pixels = canvas.bounding_box(), canvas.evaluate("c => c.width")
    # the centre of unit (y, x) of map c, maps side by side with a 1-pixel gap
    px = (c * (width + 1) + x + 0.5) * box["width"] / pixels
    py = (y + 0.5) * box["width"] / pixels
    if which == "second_page":
        page.touchscreen.tap(box["x"] + px, box["y"] + py)                # a finger's tap
    else:
        page.mouse.move(box["x"] + px, box["y"] + py)                     # the mouse hovers
    inspect = f"{ROOT} .dw-inspect"
    page.wait_for_function("([sel, unit]) => document.querySelector(sel).dataset.unit === unit",
                           arg=[inspect, f"{c},{y},{x}"])
    assert page.get_attribute(inspect, "data-layer-inspected") == layer
    assert page.get_attribute(f'{ROOT} [data-layer="input"]',
                              "data-receptive-field") == f"{top},{left},{size}"
    _assert_frames_field(page, f"{ROOT} .dw-preview", f"{ROOT} .dw-rf", (top, left, size))
    # the kernel: the last convolution at or before the layer, its filter c
    index = [e["name"] for e in manifest["layers"]].index(layer)
    conv = next(layer for layer in reversed(net.layers[:index + 1])
                if type(layer).__name__ == "Conv2D")
    kernel = conv.get_weights()[0][..., c]
    assert page.get_attribute(f"{ROOT} canvas.dw-kernel", "data-shape") == ",".join(
        str(d) for d in kernel.shape)
    assert page.locator(f"{ROOT} canvas.dw-kernel").is_visible()
    words = page.inner_text(inspect)
    assert f"{conv.name}'s filter {c}" in words and f"{size}×{size}" in words
    # the kernel is the exported one (BatchNorm may be folded in), in the export's dtype
    assert f"as exported, in {manifest['dtype']}" in words
    if kernel.shape[2] == 1:              # one input channel: its weights are read out
        label = page.get_attribute(f"{ROOT} canvas.dw-kernel", "aria-label")
        assert ", ".join(f"{v:.2f}" for v in kernel.ravel()) in label
    _check_inspector_beside_the_unit(page, layer, (c, y, x), width, (top, left, size))


def _assert_frames_field(page, image, frame, field):
    """The frame (a selector) outlines the receptive field (top, left, size in input
    pixels) on the 28x28 picture ``image`` (a selector), to within a screen pixel."""
    top, left, size = field
    image, frame = (page.locator(sel).bounding_box() for sel in (image, frame))
    pixel = image["width"] / 28
    for got, want in ((frame["width"], size), (frame["height"], size),
                      (frame["x"] - image["x"], left), (frame["y"] - image["y"], top)):
        assert abs(got - want * pixel) < 1, (got, want * pixel)


def _check_inspector_beside_the_unit(page, layer, unit, width, field):
    """The inspector sits in the inspected view, below its picture, with a copy of the
    input framing the receptive field (top, left, size in input pixels); the unit
    (map c, row y, column x of maps `width` wide, side by side 1 pixel apart) is
    outlined on the picture."""
    c, y, x = unit
    view = f'{ROOT} [data-layer="{layer}"]'
    assert page.locator(f"{view} .dw-inspect").count() == 1
    maps = page.locator(f"{view} canvas.dw-maps").bounding_box()
    assert page.locator(f"{view} .dw-inspect").bounding_box()["y"] >= maps["y"] + maps["height"]
    _assert_frames_field(page, f"{view} .dw-preview-copy", f"{view} .dw-inspect-rf", field)
    pixels = page.locator(f"{view} canvas.dw-maps").evaluate("c => c.width")
    scale = maps["width"] / pixels
    mark = page.locator(f"{view} .dw-unit")
    assert mark.count() == 1 and mark.is_visible()
    box = mark.bounding_box()
    for got, want in ((box["x"] - maps["x"], (c * (width + 1) + x) * scale),
                      (box["y"] - maps["y"], y * scale), (box["width"], scale)):
        assert abs(got - want) < 1, (got, want)


@pytest.mark.browser
def test_a_unit_can_be_inspected_from_the_keyboard(page):
    inspector = f"{ROOT} .dw-inspect"
    if not page.locator(f'{ROOT} [data-layer="conv1"]').count():
        pytest.skip("not the committed model (no layer conv1)")
    page.locator(f'{ROOT} [data-layer="conv1"] canvas').focus()     # conv1: 26x26 maps
    assert page.get_attribute(inspector, "data-layer-inspected") == "conv1"
    # the inspector's words are announced as the keys move the unit
    assert page.get_attribute(f"{inspector} p", "aria-live") == "polite"
    c, y, x = map(int, page.get_attribute(inspector, "data-unit").split(","))
    for key in ("ArrowLeft", "ArrowUp", "ArrowUp", "PageDown"):
        page.keyboard.press(key)
    c, y, x = min(c + 1, 31), max(y - 2, 0), max(x - 1, 0)
    page.wait_for_function("([sel, unit]) => document.querySelector(sel).dataset.unit === unit",
                           arg=[inspector, f"{c},{y},{x}"])
    assert page.get_attribute(f'{ROOT} [data-layer="input"]',
                              "data-receptive-field") == f"{y},{x},3"
    _check_inspector_beside_the_unit(page, "conv1", (c, y, x), 26, (y, x, 3))


def _in_viewport(page, selector):
    box, view = page.locator(selector).bounding_box(), page.viewport_size
    return (box is not None and box["x"] >= 0 and box["y"] >= 0
            and box["x"] + box["width"] <= view["width"]
            and box["y"] + box["height"] <= view["height"]), box


@pytest.mark.browser
def test_a_deep_unit_is_inspected_in_view_on_a_phone(browser, export_dir, tmp_path):
    """On a 390x844 phone, tapping a unit of the last layer with maps shows its kernel,
    its receptive field and its outline on the screen, not at the widget's top."""
    url = make_page(tmp_path, export_dir / WEIGHTS_JS)
    page, errors, _ = open_page(browser, url, viewport={"width": 390, "height": 844},
                                has_touch=True, is_mobile=True)
    try:
        assert wait_state(page, "ready", "error") == "ready"
        layer = page.eval_on_selector_all(f"{ROOT} canvas.dw-maps[tabindex]",
                                          "cs => cs[cs.length - 1].closest('[data-layer]')"
                                          ".dataset.layer")
        view = f'{ROOT} [data-layer="{layer}"]'
        canvas = page.locator(f"{view} canvas")
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        half = box["width"] / canvas.evaluate("c => c.width") / 2
        page.touchscreen.tap(box["x"] + half, box["y"] + half)      # map 0, unit (0, 0)
        page.wait_for_function("([sel, layer]) => document.querySelector(sel)"
                               ".dataset.layerInspected === layer",
                               arg=[f"{ROOT} .dw-inspect", layer])
        assert page.get_attribute(f"{ROOT} .dw-inspect", "data-unit") == "0,0,0"
        # the top of the widget (the drawing, its 28x28 input) is scrolled off-screen...
        assert page.locator(f"{ROOT} .dw-preview").bounding_box()["y"] < 0
        # ...but the kernel, the input copy with its frame and the unit's outline are on it
        for sel in (f"{view} canvas.dw-kernel", f"{view} .dw-inspect-input",
                    f"{view} .dw-inspect p", f"{view} .dw-unit"):
            inside, where = _in_viewport(page, sel)
            assert inside, (sel, where)
        image = page.locator(f"{view} .dw-inspect-input").bounding_box()
        frame = page.locator(f"{view} .dw-inspect-rf").bounding_box()
        assert frame["x"] < image["x"] + image["width"]
        assert frame["y"] < image["y"] + image["height"]
        assert frame["x"] + frame["width"] > image["x"]                # it frames part of it
        assert frame["y"] + frame["height"] > image["y"]
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        assert errors == []
    finally:
        page.context.close()


@pytest.mark.browser
def test_clear_works_from_the_keyboard(page):
    page.locator(f"{ROOT} canvas").first.scroll_into_view_if_needed()
    draw_mouse(page, stroke_points(7, 70, 50, 170))
    assert wait_state(page, "predicted") == "predicted"
    page.get_by_role("button", name="Clear").focus()
    page.keyboard.press("Enter")
    assert wait_state(page, "ready") == "ready"
    assert widget_result(page) == (None, None)
    draw_mouse(page, stroke_points(7, 70, 50, 170))
    assert wait_state(page, "predicted") == "predicted"
    page.locator(f"{ROOT} canvas").first.focus()         # Escape on the drawing clears it too
    page.keyboard.press("Escape")
    assert wait_state(page, "ready") == "ready"
    assert widget_result(page) == (None, None)
    assert page.get_attribute(f"{ROOT} canvas", "aria-label").startswith("Drawing area")


@pytest.mark.browser
def test_the_widget_fits_a_phone(browser, export_dir, tmp_path):
    url = make_page(tmp_path, export_dir / WEIGHTS_JS)
    page, errors, _ = open_page(browser, url, viewport={"width": 390, "height": 844},
                                has_touch=True, is_mobile=True)
    try:
        assert wait_state(page, "ready", "error") == "ready"
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        boxes = [page.locator(f"{ROOT} [data-layer]").nth(i).bounding_box()
                 for i in range(page.locator(f"{ROOT} [data-layer]").count())]
        assert max(b["x"] + b["width"] for b in boxes) <= 390
        assert len({round(b["y"]) for b in boxes}) > 3                  # the views wrap
        assert errors == []
    finally:
        page.context.close()


# ------------------------------------------------- the convolution chapter's step-through

STEP = '[data-testid="conv-stepthrough"]'
# Kernels like the chapter's four hand-designed ones (the chapter passes its own).
CHAPTER_KERNELS = {
    "vertical edge": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "horizontal edge": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
    "blur": [[1 / 16, 2 / 16, 1 / 16], [2 / 16, 4 / 16, 2 / 16], [1 / 16, 2 / 16, 1 / 16]],
    "outline": [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]],
}


def _stepthrough_page(browser, folder, body: str, weights: Path | None = None):
    """(page, console errors, requests) of a page holding ``body`` beside the widget's
    scripts, stepthrough.js and, if given, ``weights`` (a weights.js, for a digit widget
    on the page: the step-through loads none), opened from disk."""
    from mnist_cnn.web import WIDGET_FILES

    from benchmarks.widget import WIDGET_DIR

    for name in (*WIDGET_FILES, "stepthrough.js"):
        shutil.copy(WIDGET_DIR / name, folder / name)
    if weights is not None and weights != folder / WEIGHTS_JS:
        shutil.copy(weights, folder / WEIGHTS_JS)
    (folder / "index.html").write_text(
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>step</title></head>'
        f'<body>{body}</body></html>')
    return open_page(browser, (folder / "index.html").as_uri())


@pytest.mark.browser
def test_stepthrough_shows_numpys_convolution_of_the_readers_digit(browser, tmp_path):
    from mnist_cnn.scratch.functional import conv2d
    from mnist_cnn.web import stepthrough_html

    page, errors, requests = _stepthrough_page(
        browser, tmp_path, stepthrough_html(CHAPTER_KERNELS, static=""))
    try:
        assert wait_state(page, "ready", "error", root=STEP) == "ready", page.inner_text(STEP)
        # the surface its element gives (data-canvas): the app's, from mnist_cnn.canvas
        assert page.locator(f"{STEP} canvas").first.evaluate("c => [c.width, c.height]") == [
            CANVAS, CANVAS]
        draw_mouse(page, stroke_points(4, 60, 40, 180), root=STEP)
        assert wait_state(page, "drawn", root=STEP) == "drawn"
        image = np.array(page.evaluate(f"Array.from(document.querySelector('{STEP}').convImage)"),
                         np.float32).reshape(1, 28, 28, 1)
        page.locator(f"{STEP} input[type=range]").fill("345")
        for _ in range(2):
            page.get_by_role("button", name="Next ▶").click()
        for name, kernel in CHAPTER_KERNELS.items():
            page.locator(f"{STEP} select").select_option(name)
            page.wait_for_function("([sel, name]) => document.querySelector(sel).dataset.kernel "
                                   "=== name", arg=[STEP, name])
            assert page.get_attribute(STEP, "data-position") == "13,9"      # 347 = 13 * 26 + 9
            weights = np.array(json.loads(page.get_attribute(STEP, "data-weights")), np.float32)
            np.testing.assert_array_equal(weights, np.ravel(kernel).astype(np.float32))
            out, _ = conv2d(image, weights.reshape(3, 3, 1, 1), np.zeros(1, np.float32))
            shown = float(page.get_attribute(STEP, "data-sum"))
            # both float32 sums of nine products: equal by the course's rule
            assert_close(np.float32(shown), out[0, 13, 9, 0], f"step-through sum, {name}")
            assert f"{shown:.4f}" in page.inner_text(f"{STEP} .cs-sum")
            assert "unrounded" in page.inner_text(f"{STEP} .cs-sum")
            _check_products(page, image[0, 13:16, 9:12, 0], weights, shown)
        # the slider says where the window is, in words
        slider = f"{STEP} input[type=range]"
        assert page.get_attribute(slider, "aria-valuetext") == "row 13, column 9"
        # the output map: a legend, and one scale (the whole map's largest |value|), so
        # the cells already shown keep their colours as the window moves on
        assert "largest |value|" in page.inner_text(f"{STEP} .cs-legend")
        before = _output_pixels(page)
        page.get_by_role("button", name="Next ▶").click()
        page.wait_for_function("sel => document.querySelector(sel).dataset.position === '13,10'",
                               arg=STEP)
        assert page.get_attribute(slider, "aria-valuetext") == "row 13, column 10"
        after = _output_pixels(page)
        seen = 13 * 26 + 9 + 1                           # the cells shown before the step
        np.testing.assert_array_equal(after[:seen], before[:seen])
        out, _ = conv2d(image, weights.reshape(3, 3, 1, 1), np.zeros(1, np.float32))
        values = out[0, :, :, 0].ravel()[:seen + 1]
        top = np.abs(out).max()
        positive = values > 0                            # white: red = 255 * value / top
        assert positive.any()
        np.testing.assert_allclose(after[:seen + 1, 0][positive], 255 * values[positive] / top,
                                   atol=1)
        assert errors == []
        assert all(r.startswith("file://") for r in requests), requests
        assert not any(r.endswith(WEIGHTS_JS) for r in requests)     # no network needed
    finally:
        page.context.close()


def _output_pixels(page) -> np.ndarray:
    """The step-through's output picture: (cells, RGBA), in raster order."""
    data = page.eval_on_selector(f"{STEP} .cs-view:nth-of-type(2) canvas", """c => Array.from(
        c.getContext("2d").getImageData(0, 0, c.width, c.height).data)""")
    return np.array(data, np.int64).reshape(-1, 4)


_PRODUCT = re.compile(r"^(-?\d+\.\d{3}) × (-?\d+\.\d{3}) = (-?\d+\.\d{3})$")


def _check_products(page, window, weights, shown_sum):
    """The table: the window's nine pixels, weights and products, each to 3 decimals
    (no "-0.000"), adding up, within their rounding, to the (unrounded) sum shown."""
    cells = page.eval_on_selector_all(f"{STEP} .cs-products td", "ts => ts.map(t => t.textContent)")
    assert len(cells) == 9
    products = []
    for text, x, w in zip(cells, window.ravel(), weights, strict=True):
        match = _PRODUCT.match(text)
        assert match, text
        assert "-0.000" not in text, text
        shown_x, shown_w, shown_p = (float(g) for g in match.groups())
        assert abs(shown_x - x) <= 0.0005 + 1e-6 and abs(shown_w - w) <= 0.0005 + 1e-6, text
        assert abs(shown_p - x * w) <= 0.0005 + 1e-6, text
        products.append(shown_p)
    assert abs(sum(products) - shown_sum) <= 9 * 0.0005 + 1e-5, (products, shown_sum)


def test_stepthrough_html_carries_the_kernels_it_is_given_and_the_apps_surface():
    import html as html_module

    from mnist_cnn.web import stepthrough_html

    text = stepthrough_html(CHAPTER_KERNELS)
    given = json.loads(html_module.unescape(re.search(r'data-kernels="([^"]*)"', text)[1]))
    assert list(given) == list(CHAPTER_KERNELS)
    for name, kernel in CHAPTER_KERNELS.items():
        np.testing.assert_array_equal(given[name], np.ravel(kernel).astype(np.float32))
    # the pad's drawing surface: mnist_cnn.canvas' (the app's and the digit widget's)
    surface = re.findall(r' data-(canvas|brush)="([^"]*)"', text)
    assert surface == [("canvas", str(CANVAS)), ("brush", str(BRUSH))]
    assert 'src="../_static/digit_widget/widget.js"' in text      # which loads the rest
    for bad in ({"big": np.ones((5, 5))}, {"nan": np.full((3, 3), np.nan)}, {}):
        with pytest.raises(ValueError, match="kernel"):
            stepthrough_html(bad)


@pytest.mark.browser
def test_stepthrough_without_kernels_says_so_and_the_page_works(browser, tmp_path):
    page, errors, requests = _stepthrough_page(
        browser, tmp_path, '<div data-testid="conv-stepthrough" data-kernels="[1, 2" '
        f'data-canvas="{CANVAS}" data-brush="{BRUSH}"></div>'
        '<p id="after">the rest of the page</p><script src="widget.js"></script>')
    try:
        assert wait_state(page, "ready", "error", root=STEP) == "error"
        assert "no 3×3 kernels" in page.inner_text(STEP)
        assert page.inner_text("#after") == "the rest of the page" and errors == []
        assert not any(r.endswith(WEIGHTS_JS) for r in requests)
    finally:
        page.context.close()


@pytest.mark.browser
def test_stepthrough_loaded_on_its_own_loads_what_it_needs(browser, tmp_path):
    """A page made before widget.js loaded the step-through includes stepthrough.js
    alone: it still runs (an element this old has no drawing surface either, and is
    refused; this one has its surface, to show the loading alone)."""
    from mnist_cnn.web import stepthrough_html

    element = stepthrough_html(CHAPTER_KERNELS, static="").replace("widget.js", "stepthrough.js")
    page, errors, requests = _stepthrough_page(browser, tmp_path, element)
    try:
        assert wait_state(page, "ready", "error", root=STEP) == "ready", page.inner_text(STEP)
        assert page.locator(f"{STEP} select option").count() == len(CHAPTER_KERNELS)
        assert errors == []
        assert not any(r.endswith(WEIGHTS_JS) for r in requests)
    finally:
        page.context.close()


# ------------------ the drawing surface: the widget's from the manifest, the step-through's
# from its element

_INK_ROWS = """c => {      // the rows of column c.width / 2 holding ink (alpha > 127)
    const d = c.getContext("2d").getImageData(c.width >> 1, 0, 1, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) n += d[i] > 127;
    return n;
}"""


def _stepthrough_element(size=None, brush=None) -> str:
    """The chapter's step-through as mnist_cnn.web writes it, its drawing surface
    replaced: data-canvas ``size`` and data-brush ``brush`` (each left out if None)."""
    from mnist_cnn.web import stepthrough_html

    element = stepthrough_html(CHAPTER_KERNELS, static="")
    surface = f' data-canvas="{CANVAS}" data-brush="{BRUSH}"'
    assert element.count(surface) == 1
    return element.replace(surface, "".join(
        f' data-{name}="{value}"' for name, value in (("canvas", size), ("brush", brush))
        if value is not None))


def _both_pads_page(browser, folder: Path, weights: Path, element: str):
    """(page, errors, requests) of a page from disk with the digit widget beside
    ``weights`` and the step-through ``element``."""
    body = ('<h1 id="rest">The rest of the page</h1><div data-testid="digit-widget"></div>'
            + element)
    return _stepthrough_page(browser, folder, body, weights)


def _draw_a_line(page, root: str, size: int) -> None:
    """A horizontal stroke across the middle of ``root``'s pad (``size`` canvas pixels)."""
    pad = page.locator(f"{root} canvas").first
    pad.scroll_into_view_if_needed()
    points = [(size * (0.2 + 0.6 * i / 30), size / 2) for i in range(31)]
    for method, args in pen_events(pad.bounding_box(), [points], canvas_px=size):
        getattr(page.mouse, method)(*args)


@pytest.mark.browser
def test_each_pad_takes_its_size_and_brush_from_its_own_source(browser, export_dir, tmp_path):
    """The widget's pad is as the export's manifest says (here 200 canvas pixels, a
    12-pixel brush), the step-through's as its element says (160 pixels, a 6-pixel
    brush): each that size, drawn on with that brush, neither taking the other's; the
    widget still reads a digit drawn on its pad."""
    pads = {ROOT: (200, 12), STEP: (160, 6)}
    assert len({*pads.values(), (CANVAS, BRUSH)}) == 3
    weights = _export_variant(export_dir, tmp_path, lambda m: m["canvas"].update(
        size=pads[ROOT][0], brush=pads[ROOT][1]))
    page, errors, _ = _both_pads_page(browser, tmp_path, weights,
                                      _stepthrough_element(*pads[STEP]))
    try:
        assert wait_state(page, "ready", "error") == "ready", page.inner_text(ROOT)
        assert wait_state(page, "ready", "error", root=STEP) == "ready", page.inner_text(STEP)
        for root, (size, brush) in pads.items():
            pad = page.locator(f"{root} canvas").first
            assert pad.evaluate("c => [c.width, c.height]") == [size, size], root
            _draw_a_line(page, root, size)     # as thick as the pad's brush
            assert wait_state(page, "predicted", "too-small", "empty", "drawn",
                              root=root) in ("predicted", "drawn"), root
            assert abs(pad.evaluate(_INK_ROWS) - brush) <= 2, root
        # the widget shows its surface at its size, as the app shows its 280 pixels
        assert page.locator(f"{ROOT} canvas").first.bounding_box()["width"] == pytest.approx(
            pads[ROOT][0], abs=0.5)
        page.locator(ROOT).get_by_role("button", name="Clear").click()
        assert wait_state(page, "ready") == "ready"
        page.locator(f"{ROOT} canvas").first.scroll_into_view_if_needed()
        box = page.locator(f"{ROOT} canvas").first.bounding_box()
        for method, args in pen_events(box, stroke_points(7, 35, 25, 150),
                                       canvas_px=pads[ROOT][0]):
            getattr(page.mouse, method)(*args)
        assert wait_state(page, "predicted", "too-small", "empty") == "predicted"
        assert widget_result(page)[0] == 7
        assert errors == []
    finally:
        page.context.close()


@pytest.mark.browser
@pytest.mark.parametrize(("change", "says"), [
    (_without_canvas, "the export's manifest gives no drawing surface (canvas.size and "
                      "canvas.brush"),
    (_old_format, f"weights.js is a mnist_cnn-web/2 export, this page reads {FORMAT}"),
    (lambda m: m["canvas"].update(size=MAX_CANVAS + 1),
     "the export's manifest gives no usable drawing surface (canvas.size and canvas.brush): "
     "the size must be"),
    (lambda m: m["canvas"].update(brush=float("inf")),
     "the export's manifest gives no usable drawing surface (canvas.size and canvas.brush): "
     "the brush must be"),
], ids=["no-canvas", "old-format", "size-huge", "brush-infinite"])
def test_an_export_without_a_drawing_surface_is_refused_in_the_page(browser, export_dir,
                                                                    tmp_path, change, says):
    """No size is guessed: the widget says why it cannot run, and the page works,
    the step-through too (it needs no export)."""
    page, errors, _ = _both_pads_page(browser, tmp_path,
                                      _export_variant(export_dir, tmp_path, change),
                                      _stepthrough_element(CANVAS, BRUSH))
    try:
        assert wait_state(page, "ready", "error") == "error"
        widget = page.inner_text(f"{ROOT} .dw-message")
        assert says in widget and "export it again" in widget, widget
        assert "The rest of the page works" in widget
        assert page.locator(f"{ROOT} canvas.dw-draw").is_hidden()    # no surface of a guessed size
        assert wait_state(page, "ready", "error", root=STEP) == "ready", page.inner_text(STEP)
        assert page.inner_text("#rest") == "The rest of the page"
        assert errors == []
    finally:
        page.context.close()


NO_SURFACE = ("The step-through cannot run here: the page gives no drawing surface "
              "(data-canvas and data-brush, in canvas pixels)")
BAD_SURFACE = ("The step-through cannot run here: the page gives no usable drawing surface "
               "(data-canvas and data-brush, in canvas pixels): ")


@pytest.mark.browser
def test_stepthrough_from_an_older_library_says_to_rerun_it_and_the_page_works(
        browser, export_dir, tmp_path):
    """An element written before it carried its pad's size and brush (a chapter output
    cached then): the step-through says so and what to do, guessing no size; the
    digit widget beside it and the rest of the page work."""
    page, errors, _ = _both_pads_page(browser, tmp_path, export_dir / WEIGHTS_JS,
                                      _stepthrough_element())
    try:
        assert wait_state(page, "ready", "error", root=STEP) == "error"
        step = page.inner_text(f"{STEP} .cs-message")
        assert step.startswith(NO_SURFACE), step
        for says in ("an older version of mnist_cnn", "re-run the chapter", "`make book`",
                     "The rest of the page works."):
            assert says in step, step
        assert page.locator(f"{STEP} canvas").count() == 0              # no pad of a guessed size
        assert wait_state(page, "ready", "error") == "ready", page.inner_text(ROOT)
        assert page.inner_text("#rest") == "The rest of the page"
        assert errors == []
    finally:
        page.context.close()


@pytest.mark.browser
@pytest.mark.parametrize(("size", "brush"), [
    (0, BRUSH), (CANVAS + 0.5, BRUSH), ("big", BRUSH), (MAX_CANVAS + 1, BRUSH),
    (CANVAS, None), (CANVAS, -BRUSH), (CANVAS, "wide"), (CANVAS, "Infinity"),
    (CANVAS, CANVAS / 2),
], ids=["size-0", "size-fraction", "size-text", "size-huge", "no-brush", "brush-negative",
        "brush-text", "brush-infinite", "brush-too-wide"])
def test_stepthrough_refuses_an_invalid_drawing_surface(browser, tmp_path, size, brush):
    """A surface by the library's rule (mnist_cnn.canvas.surface_problem), or no pad
    (and no weights loaded), and a message saying what is wrong."""
    page, errors, requests = _stepthrough_page(
        browser, tmp_path, _stepthrough_element(size, brush) +
        '<p id="after">the rest of the page</p>')
    try:
        assert wait_state(page, "ready", "error", root=STEP) == "error"
        says = page.inner_text(f"{STEP} .cs-message")
        assert says.startswith(BAD_SURFACE), says
        assert ("it needs both" if brush is None else
                "the size must" if size != CANVAS else "the brush must") in says, says
        assert page.inner_text("#after") == "the rest of the page"
        assert page.evaluate("() => window.MnistCnn.scripts.then(() => true)")   # all loaded
        assert errors == [] and not any(r.endswith(WEIGHTS_JS) for r in requests)
    finally:
        page.context.close()


def test_the_widget_page_loads_exactly_the_files_widget_bytes_counts(browser, export_dir,
                                                                      tmp_path):
    from urllib.parse import urlparse

    from mnist_cnn.web import WIDGET_FILES

    page, errors, requests = open_page(browser, make_page(tmp_path, export_dir / WEIGHTS_JS))
    try:
        assert wait_state(page, "ready", "error") == "ready"
        loaded = {Path(urlparse(r).path).name for r in requests} - {"index.html"}
        assert loaded == {*WIDGET_FILES, WEIGHTS_JS}
        assert errors == []
    finally:
        page.context.close()


def test_widget_bytes_counts_what_the_widget_loads(export_dir, tmp_path):
    import gzip

    from mnist_cnn.web import WIDGET_FILES, widget_bytes

    from benchmarks.widget import WIDGET_DIR

    got = widget_bytes(export_dir, WIDGET_DIR)
    paths = [WIDGET_DIR / name for name in WIDGET_FILES] + [export_dir / WEIGHTS_JS]
    assert got["files"] == {p.name: p.stat().st_size for p in paths}
    assert got["total"] == sum(p.stat().st_size for p in paths)
    assert got["gzip"] == sum(len(gzip.compress(p.read_bytes(), 9)) for p in paths)
    assert 0 < got["gzip"] < got["total"]
    with pytest.raises(FileNotFoundError, match="weights.js"):
        widget_bytes(tmp_path, WIDGET_DIR)       # no export there


def test_the_export_folder_outside_a_checkout_is_the_working_folders_book(tmp_path,
                                                                          monkeypatch):
    from mnist_cnn import paths

    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path / "site-packages")  # an installed copy
    clone = tmp_path / "clone"
    (clone / "book" / "_static").mkdir(parents=True)
    expected = clone / "book" / "_static" / "digit_widget"
    for cwd in (clone, clone / "book"):   # the clone, or its book/ where a chapter runs
        monkeypatch.chdir(cwd)
        assert paths.web_export_dir() == expected
