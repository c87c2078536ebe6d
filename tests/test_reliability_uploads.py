"""Hostile uploads through the app's upload path (Streamlit AppTest).

Each file gets a clear message (or, for unusual but valid images, the right
digit), the app raises nothing, and the same session predicts a good upload
and a drawing afterwards. The decompression bomb (a 20000x20000 1-bit PNG of
a few KB, written by hand with zlib) is refused from its header: Pillow's
guard is on and the peak memory of the upload path, measured in a fresh
subprocess, stays bounded.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
from PIL import Image

from tests._helpers_app import render_digit
from tests.test_app_streamlit import _draw, _png, _texts, _upload

# Peak memory the upload path may use on a hostile file, over the process baseline.
MEMORY_BOUND_MB = 300


# --------------------------------------------------------------------------- files


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def bomb_png(side: int = 20000) -> bytes:
    """A side x side 1-bit grayscale PNG of zeros: ~50 MB of pixels in a few tens of KB.

    Written chunk by chunk with a streaming compressor, so making it costs no memory.
    """
    row = b"\x00" + bytes((side + 7) // 8)  # filter byte "none" + packed bits
    comp = zlib.compressobj(9)
    parts = [comp.compress(row) for _ in range(side)]
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit gray
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b""))


def _digit(digit=7):
    """A dark-on-light photo-like digit: uint8 (280, 280), black ink on white paper."""
    return 255 - render_digit(digit, 60, 40, 180, width=18, rgba=False)


def png16(digit=3) -> bytes:
    img = (_digit(digit).astype(np.uint16) * 257)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    assert Image.open(io.BytesIO(buf.getvalue())).mode.startswith("I;16")
    return buf.getvalue()


def cmyk_jpeg(digit=4) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_digit(digit)).convert("CMYK").save(buf, format="JPEG", quality=95)
    assert Image.open(io.BytesIO(buf.getvalue())).mode == "CMYK"
    return buf.getvalue()


def animated_gif() -> bytes:
    frames = [Image.fromarray(_digit(d)).convert("P") for d in (1, 2)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100,
                   loop=0)
    return buf.getvalue()


SVG = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="280" '
       b'height="280"><text x="100" y="200" font-size="200">7</text></svg>')


def oversize_png() -> bytes:
    """A valid PNG header padded past the 10 MiB limit (never decoded)."""
    from mnist_cnn.preprocess import MAX_BYTES

    return _png(_digit(1)) + bytes(MAX_BYTES + 1024)


# name, bytes factory, mime, what the user must be told
HOSTILE = [
    ("empty.png", lambda: b"", "image/png", "empty"),
    ("notes.png", lambda: b"shopping list: eggs, milk\n" * 20, "image/png",
     "not a supported image"),
    ("truncated.png", lambda: _png(_digit(2))[:300], "image/png", "truncated or corrupt"),
    ("bomb.png", bomb_png, "image/png", "too large"),
    ("animated.gif", animated_gif, "image/gif", "animated"),
    ("digit.svg", lambda: SVG, "image/svg+xml", "not a supported image"),
    ("vector-svg.png", lambda: SVG, "image/png", "not a supported image"),  # lying name
    ("huge.png", oversize_png, "image/png", "too large"),
]

# Unusual but valid images: the app must read the digit in them.
VALID_ODD = [("sixteen-bit.png", png16, "image/png", 3),
             ("cmyk.jpg", cmyk_jpeg, "image/jpeg", 4)]


# --------------------------------------------------------------------------- app


# The `app` and `model_path` fixtures are in conftest.py.


def _still_serves(at):
    """After a hostile file: a good upload, then a drawing, are predicted in the same session."""
    at = _upload(at, "good.png", _png(_digit(1)))
    assert not at.exception and not at.error, _texts(at.error)
    assert at.metric[0].value == "1"
    at.radio(key="source").set_value("Draw").run()
    at = _draw(at, render_digit(7, 50, 40, 170, width=16))
    assert not at.exception and not at.error
    assert at.metric[0].value == "7"


@pytest.mark.parametrize("name, make, mime, expected", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_upload_gets_a_clear_message_and_the_app_keeps_serving(
        app, name, make, mime, expected):
    at = _upload(app, name, make(), mime)
    assert not at.exception
    assert len(at.metric) == 0, "a hostile file must not produce a prediction"
    errors = _texts(at.error)
    assert expected in errors, errors
    assert name in errors  # the message says which file
    assert "Traceback" not in errors
    _still_serves(at)


@pytest.mark.parametrize("name, make, mime, digit", VALID_ODD, ids=[v[0] for v in VALID_ODD])
def test_unusual_but_valid_images_are_read(app, name, make, mime, digit):
    at = _upload(app, name, make(), mime)
    assert not at.exception and not at.error, _texts(at.error)
    assert at.metric[0].value == str(digit)
    _still_serves(at)


def _big_canvas_png(side=7000) -> bytes:
    img = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    img.paste((255, 255, 255, 255), (side // 3, side // 4, side // 2, 3 * side // 4))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("make, expected", [
    (_big_canvas_png, "too large"),                    # 49 Mpx: would be GBs as floats
    (lambda: SVG, "not a supported image"),
    (lambda: _png(render_digit(7, 50, 40, 170))[:200], "truncated or corrupt"),
], ids=["huge-png", "svg", "truncated-png"])
def test_crafted_canvas_payloads_get_a_message(app, make, expected):
    """The canvas value comes from the browser; a crafted client can send any bytes."""
    url = "data:image/png;base64," + base64.b64encode(make()).decode()
    app.session_state["canvas"] = {"drawing": {"raw": {"objects": [{"type": "path"}],
                                                       "background": "#000000"},
                                               "data": url}, "backgroundFit": None}
    at = app.run()
    assert not at.exception
    assert len(at.metric) == 0
    assert expected in _texts(at.error), _texts(at.error)
    _still_serves(at)


# --------------------------------------------------------------------------- the bomb


def test_pillow_decompression_bomb_guard_is_on():
    from mnist_cnn import preprocess

    assert Image.MAX_IMAGE_PIXELS is not None
    assert Image.MAX_IMAGE_PIXELS <= 2 * preprocess.MAX_PIXELS
    data = bomb_png()
    assert len(data) < 100_000  # a few tens of KB on the wire ...
    # ... that Pillow itself refuses to decode (20000^2 > 2 * MAX_IMAGE_PIXELS) ...
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data)).load()
    # ... and that load_image refuses from the header, with a reason.
    with pytest.raises(ValueError, match="too large"):
        preprocess.load_image(data)


_PEAK_SCRIPT = textwrap.dedent("""
    import json, resource, sys, time
    from mnist_cnn.preprocess import load_image, to_mnist
    data = sys.stdin.buffer.read()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    try:
        x = to_mnist(load_image(data))
        outcome = "blank" if x is None else "image"
    except ValueError as exc:
        outcome = "ValueError: " + str(exc)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"outcome": outcome, "peak_mb": (peak - base) / 1024,
                      "seconds": time.perf_counter() - t0}))
""")


def upload_path_peak(data: bytes) -> dict:
    """Peak RSS growth (MB) of load_image + to_mnist on ``data`` in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT], input=data,
                          capture_output=True, timeout=120, check=True)
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def test_bomb_memory_stays_bounded():
    res = upload_path_peak(bomb_png())
    assert res["outcome"].startswith("ValueError") and "too large" in res["outcome"]
    assert res["peak_mb"] < MEMORY_BOUND_MB, res


@pytest.mark.slow
def test_largest_allowed_image_memory_stays_bounded():
    """A 4999x4999 RGBA PNG of ~110 KB is inside the pixel limit; decoding and
    preprocessing it must not cost gigabytes."""
    buf = io.BytesIO()
    img = Image.new("RGBA", (4999, 4999), (255, 255, 255, 255))
    img.paste((0, 0, 0, 255), (2000, 1500, 3000, 3500))  # a dark bar: some ink
    img.save(buf, format="PNG")
    del img
    res = upload_path_peak(buf.getvalue())
    assert res["outcome"] in ("image", "blank"), res
    assert res["peak_mb"] < MEMORY_BOUND_MB, res
