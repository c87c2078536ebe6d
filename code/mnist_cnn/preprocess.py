"""From a drawing, photo or scan to the 28x28 image an MNIST model expects.

MNIST digits were scaled so that their longer side fits a 20x20 box (keeping
the aspect ratio, with anti-aliasing) and then placed in a 28x28 field so that
their centre of mass sits in the middle. A model trained on MNIST has only ever
seen digits like that, so a digit drawn small, large or in a corner of a
280x280 canvas must be brought into the same form before the model reads it.
:func:`to_mnist` does exactly the MNIST steps:

1. ``ink_map``   - any image -> an "ink map" in [0, 1] (1 = ink), detecting
                   whether the ink is dark on light or light on dark, and using
                   the alpha channel when there is one (transparent = background);
2. ``_bbox``     - crop to the bounding box of the ink;
3. ``_fit_box``  - scale the longer side to 20 px, keeping the aspect ratio,
                   with area averaging (anti-aliasing); strokes far thicker than
                   MNIST's for their digit's size (a wide brush, a small digit)
                   are first eroded towards MNIST's proportion (``_thin``);
4. ``_centre``   - paste into 28x28 so the centre of mass lands where MNIST's does.

:func:`naive_resize` is the shortcut a first version of the app took (squash
the whole canvas to 28x28); the canvas benchmark and the deployment chapter compare the
two. :func:`load_image` opens uploaded files defensively.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from mnist_cnn.shapes import IMAGE_SHAPE

# MNIST geometry: digits fit a 20x20 box inside a 28x28 field.
SIZE = IMAGE_SHAPE[0]
BOX = 20
# Mean centre of mass of MNIST's training digits, in pixel-index coordinates
# (measured on the 55,000 of the training split: 14.00, 14.01), so we put ours in
# the same place.
CENTRE = 14.0
# Ink weaker than this (relative to the strongest ink) is treated as paper
# noise / anti-aliasing fringe when finding the bounding box.
INK_THRESHOLD = 0.2
# Less contrast than this (on a 0..1 scale) between ink and background is "no ink".
MIN_CONTRAST = 0.05
# Stroke width / digit size (stroke_fraction) on MNIST's training digits (the
# 55,000 of the training split; the test digits play no part in choosing it):
# median 0.14, 90th percentile 0.20, 99th 0.26 (the deployment chapter measures
# it). Only strokes thicker than all but the boldest MNIST digits are thinned
# (above the 99th percentile), and only back to a bold-but-typical width (the 90th).
THICK_FRACTION = 0.26
STROKE_FRACTION = 0.20
# Opaque pixels whose gray levels span less than this are one brush colour.
UNIFORM_STROKE = 0.1

# Upload limits (the app and CLI pass their own; these are the defaults). Messages
# say "MB" for 2**20 bytes, as Streamlit's maxUploadSize counts it.
MAX_BYTES = 10 * 1024 * 1024          # 10 MB of 2**20 bytes (10 MiB)
MAX_PIXELS = 5000 * 5000              # 25 megapixels
MAX_SIDE = 1024                       # uploads are shrunk to this longer side on load
ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")

# Keep Pillow's decompression-bomb guard on (it is on by default; make sure
# nobody imported before us switched it off) and never decode truncated files.
if Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS > 2 * MAX_PIXELS:
    Image.MAX_IMAGE_PIXELS = 2 * MAX_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False

__all__ = ["to_mnist", "naive_resize", "load_image", "ink_map", "SIZE", "BOX",
           "MAX_BYTES", "MAX_PIXELS"]


# --------------------------------------------------------------------------- input


def _pil_to_array(img: Image.Image) -> np.ndarray:
    """A PIL image in any mode -> an array in a mode :func:`_as_float` understands."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(img, dtype=np.uint16)
    if mode in ("I", "F"):
        return np.asarray(img)
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        mode == "P" and "transparency" in img.info)
    if has_alpha:
        return np.asarray(img.convert("RGBA"))
    if mode in ("1", "L"):
        return np.asarray(img.convert("L"))
    return np.asarray(img.convert("RGB"))


def _as_float(image) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate ``image`` and return (gray (H, W) float64 in [0, 1], alpha or None).

    Inputs:
    - image: PIL image, or array-like (H, W), (H, W, 1), (H, W, 2) gray+alpha,
      (H, W, 3) RGB or (H, W, 4) RGBA; bool, integer or float.
      Integers are read as 0..255 (uint8 and anything within that range),
      0..65535 (uint16) or min..max otherwise; floats as 0..1, 0..255 or
      min..max, whichever contains the finite values. Non-finite pixels
      (NaN, inf) are treated as transparent, i.e. background.
    """
    arr = _image_array(image)
    x = arr.astype(np.float64)
    finite = np.isfinite(x)
    return _gray_and_alpha(_to_unit_range(x, arr.dtype, finite), finite)


def _image_array(image) -> np.ndarray:
    """``image`` as an array of numbers of shape (H, W) or (H, W, 1..4), or
    ValueError saying why it is not an image."""
    if isinstance(image, Image.Image):
        arr = _pil_to_array(image)
    elif isinstance(image, (str, bytes, os.PathLike)) or image is None:
        raise ValueError(
            f"to_mnist expects an image (NumPy array or PIL image), got {type(image).__name__}; "
            "use load_image() to open a file")
    else:
        try:
            arr = np.asarray(image)
        except Exception as exc:  # ragged lists and other oddities
            raise ValueError(f"not an image: could not convert {type(image).__name__} "
                             f"to an array ({exc})") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)
                                   or arr.dtype == np.bool_):
        raise ValueError(f"not an image: array of dtype {arr.dtype}; expected numbers")
    if np.iscomplexobj(arr):
        raise ValueError("not an image: complex-valued array")
    if arr.ndim != 2 and not (arr.ndim == 3 and arr.shape[2] in (1, 2, 3, 4)):
        raise ValueError(
            f"not an image: shape {arr.shape}; expected (H, W) or (H, W, C) with C in 1..4 "
            "(one image at a time, channels last)")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"not an image: zero-size array of shape {arr.shape}")
    return arr


def _to_unit_range(x: np.ndarray, dtype: np.dtype, finite: np.ndarray) -> np.ndarray:
    """The pixel values ``x`` (float64, read from an array of ``dtype``) scaled to
    0..1 as :func:`_as_float` says: by the dtype's range for bool, uint8 and uint16,
    otherwise by the range that contains the ``finite`` values."""
    if dtype == np.bool_:
        return x
    if dtype == np.uint8:
        return x / 255.0
    if dtype == np.uint16:
        return x / 65535.0
    vals = x[finite]
    lo, hi = (vals.min(), vals.max()) if vals.size else (0.0, 1.0)
    is_int = np.issubdtype(dtype, np.integer)
    if not is_int and lo >= 0 and hi <= 1.0:      # floats already in 0..1
        return x
    if lo >= 0 and hi <= 255:                     # 8-bit values, as integers or floats
        return x / 255.0
    if is_int and lo >= 0 and hi <= 65535:        # 16-bit integers
        return x / 65535.0
    # Unusual range (negative values, huge floats): stretch min..max to 0..1.
    # Halves first: hi - lo can overflow float64 (e.g. -1e308..1e308).
    span = hi / 2 - lo / 2
    return (x / 2 - lo / 2) / span if span > 0 else np.zeros_like(x)


def _gray_and_alpha(x: np.ndarray, finite: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(gray, alpha or None) of an image in 0..1 of shape (H, W) or (H, W, C): RGB
    becomes its luma, the last channel of 2 or 4 is the alpha, and the pixels
    where ``finite`` is False are transparent (alpha 0)."""
    bad = ~finite
    if x.ndim == 2:
        x = x[..., None]
        bad = bad[..., None]
    nonfinite = bad.any(axis=2)
    x = np.where(bad, 0.0, np.clip(x, 0.0, 1.0))
    alpha = None
    if x.shape[2] in (2, 4):
        alpha = x[..., -1]
        x = x[..., :-1]
    if x.shape[2] == 3:
        # ITU-R 601 luma, as PIL's convert("L").
        gray = x @ np.array([0.299, 0.587, 0.114])
    else:
        gray = x[..., 0]
    if nonfinite.any():
        alpha = np.where(nonfinite, 0.0, 1.0 if alpha is None else alpha)
    return gray, alpha


def ink_map(image) -> np.ndarray:
    """Step 1: any image -> ink intensity (H, W) float64 in [0, 1], 1 = strongest ink.

    - A canvas (transparent background, opaque strokes of one colour): opacity
      *is* the ink, whatever the stroke colour.
    - Anything else: the background is the median grey level of the picture's
      border, and the ink is whichever direction (darker or lighter than it)
      deviates most: dark-on-light paper or light-on-dark MNIST.
    Stretched so the strongest ink is 1; too little contrast gives all zeros.
    Raises ValueError if ``image`` is not an image (see :func:`to_mnist`).
    """
    gray, alpha = _as_float(image)
    if alpha is not None and alpha.min() < 0.99:
        lo = float(alpha.min())
        # The more opaque half of the alpha range; a uniformly translucent
        # picture has none and is blank, not a filled square.
        solid = alpha > (lo + float(alpha.max())) / 2
        if not solid.any() or np.ptp(gray[solid]) < UNIFORM_STROKE:
            return _stretch(alpha - lo)
        # Opaque content with contrast of its own: transparent parts take the
        # colour of its background.
        bg_opaque = np.median(gray[solid])
        gray = alpha * gray + (1.0 - alpha) * bg_opaque
    bg = _border_median(gray)
    dark = bg - gray          # ink darker than paper
    light = gray - bg         # ink lighter than background
    ink = dark if dark.max() > light.max() else light
    return _stretch(np.clip(ink, 0.0, None))


def _border_median(gray: np.ndarray) -> float:
    """Median of a frame ~2 % of the size wide around the picture: the background,
    even when the ink covers most of the picture (a thick brush, a tight crop)."""
    h, w = gray.shape
    k = max(1, round(0.02 * min(h, w)))
    if 2 * k >= min(h, w):
        return float(np.median(gray))
    frame = np.concatenate([gray[:k].ravel(), gray[-k:].ravel(),
                            gray[k:-k, :k].ravel(), gray[k:-k, -k:].ravel()])
    return float(np.median(frame))


def _stretch(ink: np.ndarray) -> np.ndarray:
    peak = float(ink.max()) if ink.size else 0.0
    if peak < MIN_CONTRAST:
        return np.zeros_like(ink)
    ink = ink / peak
    ink[ink < INK_THRESHOLD] = 0.0
    return ink


# ---------------------------------------------------------------------- geometry


def _bbox(ink: np.ndarray) -> tuple[int, int, int, int] | None:
    """Step 2: (top, bottom, left, right) of the ink, half-open; None if no ink."""
    rows = np.flatnonzero(ink.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(ink.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _resize(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """Anti-aliased resize of a float image: exact area averaging when shrinking
    (what MNIST's anti-aliasing amounts to), bilinear when enlarging."""
    img = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32))
    shrink = height <= a.shape[0] and width <= a.shape[1]
    resample = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    return np.asarray(img.resize((width, height), resample=resample), dtype=np.float64)


def _stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in pixels: area / half the boundary (a stroke of width w and
    length L has area w*L and about 2*L boundary pixels)."""
    solid = ink > 0.5
    area = int(solid.sum())
    if area == 0:
        return 0.0
    p = np.pad(solid, 1)
    interior = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    boundary = area - int(interior.sum())
    return 2.0 * area / max(boundary, 1)


def _thin(crop: np.ndarray) -> np.ndarray:
    """Erode strokes much thicker than MNIST's (a wide brush on a small digit) back
    towards MNIST's width relative to the digit's size."""
    from PIL import ImageFilter

    width = _stroke_width(crop)
    size = max(crop.shape)
    r = int((width - STROKE_FRACTION * size) // 2)
    if width <= THICK_FRACTION * size or r < 1:
        return crop
    img = Image.fromarray(np.ascontiguousarray(crop, dtype=np.float32))
    thinned = np.asarray(img.filter(ImageFilter.MinFilter(2 * r + 1)), dtype=np.float64)
    return thinned if thinned.max() > 0 else crop


def _fit_box(ink: np.ndarray, box: int = BOX) -> np.ndarray:
    """Step 3: scale so the longer side is ``box`` px, keeping the aspect ratio."""
    h, w = ink.shape
    scale = box / max(h, w)
    nh = min(box, max(1, round(h * scale)))
    nw = min(box, max(1, round(w * scale)))
    small = np.clip(_resize(ink, nh, nw), 0.0, 1.0)
    peak = small.max()
    # A thin stroke averaged over big pixels comes out pale; MNIST digits have
    # full-intensity cores, so stretch the peak back to 1.
    return small / peak if peak > 0 else small


def centre_of_mass(image) -> tuple[float, float]:
    """(row, column) of the intensity-weighted mean pixel position of a 2-D image."""
    image = np.asarray(image, np.float64)
    total = image.sum()
    return (float(image.sum(axis=1) @ np.arange(image.shape[0]) / total),
            float(image.sum(axis=0) @ np.arange(image.shape[1]) / total))


def stroke_fraction(ink: np.ndarray) -> float:
    """Mean stroke width relative to the digit's size (the longer side of its
    bounding box); 0 for an image without ink. ``ink`` in [0, 1], e.g. an MNIST
    digit / 255."""
    box = _bbox(ink > INK_THRESHOLD)
    if box is None:
        return 0.0
    crop = ink[box[0]:box[1], box[2]:box[3]]
    return _stroke_width(crop) / max(crop.shape)


def _centre(patch: np.ndarray, size: int = SIZE, centre: float = CENTRE) -> np.ndarray:
    """Step 4: paste ``patch`` into size x size so its centre of mass is at
    (centre, centre), shifted (by whole pixels) only as far as keeps it inside."""
    h, w = patch.shape
    cy, cx = centre_of_mass(patch)
    top = int(np.clip(round(centre - cy), 0, size - h))
    left = int(np.clip(round(centre - cx), 0, size - w))
    out = np.zeros((size, size), dtype=np.float32)
    out[top:top + h, left:left + w] = patch
    return out


def to_mnist(image) -> np.ndarray | None:
    """Turn a drawing, photo or scan of one digit into an MNIST-style image.

    Inputs:
    - image: PIL image or array (H, W), (H, W, 1|2|3|4) of any size, uint8,
      uint16, bool or float (see :func:`ink_map` for how ink is found).

    Returns:
    - (28, 28) float32 in [0, 1]: white digit on black, longer side 20 px,
      centre of mass at the centre - or None if the image has no ink
      (blank canvas, constant image).

    Raises ValueError (with the reason) if ``image`` is not an image.
    """
    ink = ink_map(image)
    box = _bbox(ink)
    if box is None:
        return None
    top, bottom, left, right = box
    patch = _fit_box(_thin(ink[top:bottom, left:right]))
    if patch.sum() <= 0:
        return None
    return _centre(patch)


def naive_resize(image) -> np.ndarray | None:
    """The shortcut: squash the whole picture to 28x28 (same ink detection and
    anti-aliasing as :func:`to_mnist`, but no crop, scale or centring).

    Returns (28, 28) float32 in [0, 1], or None if there is no ink.
    """
    ink = ink_map(image)
    if not ink.any():
        return None
    out = np.clip(_resize(ink, SIZE, SIZE), 0.0, 1.0)
    return out.astype(np.float32)


# ------------------------------------------------------------------------ upload


def load_image(file_or_bytes, max_bytes: int = MAX_BYTES,
               max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open an uploaded or on-disk image defensively.

    Inputs:
    - file_or_bytes: a path (str / Path), bytes, or a binary file-like object
      (e.g. Streamlit's UploadedFile).
    - max_bytes: larger files are refused without being decoded ("too large",
      with both sizes; MB means 2**20 bytes).
    - max_pixels: larger images (width x height, read from the header) are
      refused before decoding, with a message naming the size. Pillow's
      decompression-bomb guard is checked first, when ``Image.open`` reads the
      header: this module sets ``Image.MAX_IMAGE_PIXELS`` to at most
      ``2 * MAX_PIXELS``, and an image above it (Pillow warns above that limit
      and raises above twice it; the warning is turned into an error here) is
      refused as "too large (possible decompression bomb)". So the largest
      images never reach this limit's own check, which names the size only for
      images between ``max_pixels`` and Pillow's limit. Neither decodes a pixel.

    Returns a fully decoded single-frame PIL image, rotated upright per EXIF and
    shrunk (area averaging) so its longer side is at most ``MAX_SIDE`` pixels.
    Raises ValueError with a user-readable reason for empty, too large,
    unreadable, truncated, animated, zero-size or unsupported files, and
    FileNotFoundError for a missing path.
    """
    data = _read_limited(file_or_bytes, max_bytes)
    if len(data) == 0:
        raise ValueError("the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _decode(data, max_pixels)
    except ValueError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError("the image is too large (possible decompression bomb)") from None
    except UnidentifiedImageError:
        raise ValueError("not a supported image file (use PNG, JPEG, GIF, BMP, WebP or "
                         "TIFF)") from None
    except (OSError, SyntaxError, EOFError, IndexError, TypeError, struct.error) as exc:
        raise ValueError(f"could not read the image (truncated or corrupt file: {exc})") from None
    except MemoryError:
        raise ValueError("the image is too large to decode") from None


def _decode(data: bytes, max_pixels: int) -> Image.Image:
    """The image in ``data``: its header checked (:func:`_check_header`), then
    decoded, turned upright per EXIF and shrunk (:func:`_shrink`). Pillow's errors
    pass through; :func:`load_image` turns them into ValueErrors."""
    img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    _check_header(img, max_pixels)
    img.load()
    return _shrink(ImageOps.exif_transpose(img))


def _check_header(img: Image.Image, max_pixels: int) -> None:
    """Refuse, from the header alone (nothing decoded yet), an image of zero size,
    of more than ``max_pixels`` pixels, or of more than one frame."""
    w, h = img.size
    if w == 0 or h == 0:
        raise ValueError(f"the image has zero size ({w}x{h})")
    if w * h > max_pixels:
        raise ValueError(
            f"the image is too large: {w}x{h} pixels (limit {max_pixels:,} pixels)")
    if getattr(img, "is_animated", False) or getattr(img, "n_frames", 1) > 1:
        raise ValueError("animated images are not supported; upload a single frame "
                         "(PNG or JPEG)")


def _shrink(img: Image.Image) -> Image.Image:
    """``img`` shrunk so its longer side is at most ``MAX_SIDE`` pixels.

    A digit needs 20 px; shrinking big photos right away bounds the memory and
    time of everything after (a 25-megapixel RGBA image would take gigabytes as
    float arrays). BOX = area averaging, i.e. anti-aliased.
    """
    if max(img.size) > MAX_SIDE:
        if img.mode not in ("L", "LA", "RGB", "RGBA", "F", "I"):
            img = img.convert("RGBA" if "A" in img.getbands()
                              or "transparency" in img.info else "RGB")
        img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BOX)
    return img


def _read_limited(src, max_bytes: int) -> bytes:
    """Read at most ``max_bytes`` (+1 to detect overflow) from a path, bytes or file."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
    elif isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.is_file():
            raise FileNotFoundError(f"no such image file: {path}")
        size = path.stat().st_size
        if size > max_bytes:
            raise ValueError(_too_big(size, max_bytes))
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    elif hasattr(src, "read"):
        size = getattr(src, "size", None)
        if isinstance(size, int) and size > max_bytes:
            raise ValueError(_too_big(size, max_bytes))
        if hasattr(src, "seek"):
            try:
                src.seek(0)
            except (OSError, ValueError):
                pass
        data = src.read(max_bytes + 1)
        if not isinstance(data, (bytes, bytearray)):
            raise ValueError("the upload did not provide binary data")
    else:
        raise ValueError(f"cannot read an image from {type(src).__name__}")
    if len(data) > max_bytes:
        raise ValueError(_too_big(len(data), max_bytes))
    return bytes(data)


def _file_size(n: int) -> str:
    """``n`` bytes for a message, in MB of 2**20 bytes as Streamlit's maxUploadSize and
    the app's help text count them: "10 MB", "11.0 MB"; small sizes in bytes."""
    mb = n / 2**20
    if mb < 0.1:
        return f"{n:,} bytes"
    return f"{mb:.0f} MB" if mb == round(mb) else f"{mb:.1f} MB"


def _too_big(n: int, limit: int) -> str:
    return f"the file is too large ({_file_size(n)}; limit {_file_size(limit)})"
