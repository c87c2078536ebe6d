"""The book's in-page digit widget in tests: its export, and the page helpers
(from :mod:`benchmarks.widget`, which drives the same pages in its benchmark)."""

from __future__ import annotations

from pathlib import Path

from mnist_cnn._io import sha256_file
from mnist_cnn.web import MANIFEST, WEIGHTS_JS, default_out_dir, export_web, read_weights_js

from benchmarks.widget import (  # noqa: F401
    ROOT,
    draw_mouse,
    draw_touch,
    make_page,
    open_page,
    wait_state,
    widget_result,
)


def fresh_export(model_path: Path, tmp_dir: Path) -> Path:
    """A folder holding the web export of ``model_path``: the book's own export when
    it was made from this very model file and verifies (this format, with its drawing
    surface, and its SHA-256: :func:`read_weights_js`), else a new one in ``tmp_dir``."""
    book = default_out_dir()
    try:
        manifest, _ = read_weights_js(book / WEIGHTS_JS)
        if manifest["model_sha256"] == sha256_file(model_path) and (book / MANIFEST).is_file():
            return book
    except (OSError, ValueError, KeyError):
        pass
    out = tmp_dir / "web_export"
    if not (out / WEIGHTS_JS).is_file():
        export_web(model_path, out, progress=False)
    return out
