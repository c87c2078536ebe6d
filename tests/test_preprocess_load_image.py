"""load_image: uploads are opened safely and bad files get clear ValueErrors."""

import io

import numpy as np
import pytest
from mnist_cnn.numerics import assert_close
from mnist_cnn.preprocess import load_image, to_mnist
from PIL import Image


def _png(arr, **kw):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", **kw)
    return buf.getvalue()


def _digit():
    img = np.full((100, 80), 255, np.uint8)
    img[20:80, 35:45] = 0
    return img


def test_png_bytes_path_and_file_object(tmp_path):
    data = _png(_digit())
    p = tmp_path / "d.png"
    p.write_bytes(data)
    for src in (data, p, str(p), io.BytesIO(data)):
        img = load_image(src)
        assert img.size == (80, 100)
        assert to_mnist(img) is not None


def test_jpeg_cmyk_and_16_bit_png_load():
    buf = io.BytesIO()
    Image.fromarray(_digit()).convert("CMYK").save(buf, format="JPEG")
    assert to_mnist(load_image(buf.getvalue())) is not None
    img16 = Image.fromarray(_digit().astype(np.uint16) * 257)
    buf = io.BytesIO()
    img16.save(buf, format="PNG")
    loaded = load_image(buf.getvalue())
    out = to_mnist(loaded)
    assert_close(out, to_mnist(_digit()), "16-bit PNG vs uint8")


@pytest.mark.parametrize("data, match", [
    (b"", "empty"),
    (b"hello, I am text pretending to be a PNG", "not a supported image"),
    (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
     "not a supported image"),
])
def test_bad_bytes(data, match):
    with pytest.raises(ValueError, match=match):
        load_image(data)


def test_truncated_png():
    data = _png(np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_image(data[: len(data) // 2])


def test_size_limits():
    data = _png(_digit())
    with pytest.raises(ValueError, match="too large"):
        load_image(data, max_bytes=len(data) - 1)
    with pytest.raises(ValueError, match="too large"):
        load_image(data, max_pixels=100 * 80 - 1)


def test_size_message_counts_mb_as_the_app_does():
    """MB means 2**20 bytes everywhere: Streamlit's maxUploadSize, the app's help text
    ("Up to 10 MB.") and load_image's message."""
    from mnist_cnn.preprocess import MAX_BYTES

    assert MAX_BYTES == 10 * 2**20
    too_big = b"\0" * (11 * 2**20)
    with pytest.raises(ValueError, match=r"too large \(11 MB; limit 10 MB\)"):
        load_image(too_big)
    with pytest.raises(ValueError, match=r"too large \(401 bytes; limit 400 bytes\)"):
        load_image(b"\0" * 401, max_bytes=400)


def test_pillows_guard_refuses_the_largest_images_first():
    """Above Pillow's limit (at most twice MAX_PIXELS) the header check in Image.open
    refuses first; between max_pixels and that limit, load_image's own check names
    the size. Neither decodes the image."""
    from mnist_cnn.preprocess import MAX_PIXELS

    assert Image.MAX_IMAGE_PIXELS <= 2 * MAX_PIXELS

    def blank(side):
        buf = io.BytesIO()
        Image.new("1", (side, side), 0).save(buf, format="PNG", optimize=True)
        return buf.getvalue()

    with pytest.raises(ValueError, match="possible decompression bomb"):
        load_image(blank(8000))                   # 64 Mpx: above Pillow's 50
    with pytest.raises(ValueError, match="6000x6000 pixels"):
        load_image(blank(6000))                   # 36 Mpx: above ours (25), below Pillow's


def test_decompression_bomb_is_refused_before_decoding():
    # 20000 x 20000 one-bit PNG: a few KB on disk, 400 megapixels decoded.
    buf = io.BytesIO()
    Image.new("1", (20000, 20000), 0).save(buf, format="PNG", optimize=True)
    assert len(buf.getvalue()) < 200_000
    with pytest.raises(ValueError, match="too large"):
        load_image(buf.getvalue())


def test_animated_gif_is_refused():
    frames = [Image.fromarray(_digit()), Image.fromarray(255 - _digit())]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(ValueError, match="animated"):
        load_image(buf.getvalue())


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "nope.png")


def test_not_a_source():
    with pytest.raises(ValueError, match="cannot read"):
        load_image(12345)


def test_big_photos_are_shrunk_on_load():
    from mnist_cnn.preprocess import MAX_SIDE

    big = np.full((3000, 2000), 255, np.uint8)
    big[500:2500, 900:1100] = 0
    img = load_image(_png(big))
    assert max(img.size) == MAX_SIDE
    assert abs(img.size[0] / img.size[1] - 2000 / 3000) < 0.01
    # not the same computation: the downscaled file is resampled twice, so stroke edges
    # move by a fraction of a pixel
    np.testing.assert_allclose(to_mnist(img), to_mnist(big), atol=0.15)
