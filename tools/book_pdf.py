"""Print the whole book as one PDF, for teachers and for reading without a connection.

    python -m tools.book_pdf [--out _build/pdf/cnn-from-scratch.pdf] [--path-output .]

`make pdf` runs it. Two steps, no TeX:

1. ``jupyter-book build . --builder singlehtml -n -W --keep-going``: every chapter on
   one page. Chapters come from the execution cache of the same ``--path-output``
   (``_build/.jupyter_cache``, filled by ``make book``), so none is executed again
   unless its code changed.
2. That page printed by headless Chromium (Debian's, through Playwright, as the tests
   drive it), once MathJax has typeset every equation and every figure has loaded.
   Hidden code and the exercises' solutions are opened first: the PDF is the whole
   book. The PDF has an outline (chapters and sections) and is tagged, so figures
   keep their alt text for screen readers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PDF = ROOT / "_build" / "pdf" / "cnn-from-scratch.pdf"
TYPESET_TIMEOUT_MS = 300_000   # MathJax on one page holding every chapter

# Every drop-down open (hidden cell sources, solutions); every image loaded now.
OPEN_EVERYTHING = """() => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  document.querySelectorAll('.toggle-hidden').forEach(e => e.classList.remove('toggle-hidden'));
  return Promise.all([...document.images].map(img => {
    img.loading = 'eager';
    return img.complete ? null : new Promise(done => {
      img.addEventListener('load', done); img.addEventListener('error', done); });
  }));
}"""
TYPESET = ("document.querySelectorAll('mjx-container').length >= "
           "document.querySelectorAll('.math').length")
# What would print wrong: equations MathJax could not typeset, figures that did not load.
BROKEN = """async () => {
  await document.fonts.ready;
  return {math: [...document.querySelectorAll('mjx-merror')].map(e => e.textContent).slice(0, 5),
          images: [...document.images].filter(i => !i.naturalWidth).map(i => i.src).slice(0, 5),
          count: document.images.length};
}"""


def build_single_page(path_output: Path = ROOT, quiet: bool = False) -> Path:
    """The book on one page (``<path_output>/_build/singlehtml``); returns the page to
    print. Sphinx writes the root document where it lives, ``book/index.html``, but
    links it to its style sheets, scripts and figures as if it sat at the top of the
    output (the root document is in a subfolder), so the page is printed from a copy
    there, ``print.html``. ``quiet``: the build's log only if it fails."""
    jb = Path(sys.executable).with_name("jupyter-book")
    # A kernel must not inherit a non-interactive backend (plt.show() would draw nothing).
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    build = subprocess.run([str(jb), "build", ".", "--builder", "singlehtml", "-n", "-W",
                            "--keep-going", "--path-output", str(path_output)],
                           cwd=ROOT, env=env, text=True,
                           stdout=subprocess.PIPE if quiet else None, stderr=subprocess.STDOUT)
    if build.returncode:
        log = (build.stdout or "").splitlines()
        problems = [line for line in log if "WARNING:" in line or "ERROR:" in line]
        raise RuntimeError("the single-page build failed:\n"
                           + "\n".join(problems[:40] + ["..."] + log[-20:]))
    out = Path(path_output) / "_build" / "singlehtml"
    page = out / "book" / "index.html"
    if not page.is_file():
        raise FileNotFoundError(f"the single-page build wrote no {page}")
    printable = out / "print.html"
    printable.write_bytes(page.read_bytes())
    return printable


def print_pdf(html: Path, pdf: Path, browser) -> Path:
    """Print ``html`` (a local file) with ``browser`` (Playwright Chromium) to ``pdf``.
    Raises RuntimeError, saying what, if MathJax does not finish or fails on an
    equation, or a figure does not load."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(html.resolve().as_uri(), wait_until="load")
        page.evaluate(OPEN_EVERYTHING)
        try:
            page.wait_for_function(TYPESET, timeout=TYPESET_TIMEOUT_MS)
        except PlaywrightTimeout:
            done = page.evaluate("[document.querySelectorAll('mjx-container').length, "
                                 "document.querySelectorAll('.math').length]")
            raise RuntimeError(f"MathJax typeset {done[0]} of {done[1]} equations in "
                               f"{TYPESET_TIMEOUT_MS / 1000:.0f} s") from None
        broken = page.evaluate(BROKEN)
        if broken["math"] or broken["images"]:
            raise RuntimeError(f"the page would print broken: equations MathJax could not "
                               f"typeset {broken['math']}, images that did not load "
                               f"{broken['images']}")
        page.emulate_media(media="print")
        pdf.parent.mkdir(parents=True, exist_ok=True)
        part = pdf.with_name(pdf.name + ".part")
        page.pdf(path=str(part), format="A4", print_background=True, outline=True,
                 tagged=True, margin={"top": "15mm", "bottom": "15mm",
                                      "left": "12mm", "right": "12mm"})
        part.replace(pdf)           # a reader never sees half a PDF
    finally:
        page.close()
    return pdf


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_PDF)
    parser.add_argument("--path-output", type=Path, default=ROOT,
                        help="jupyter-book's --path-output (its _build/ holds the cache)")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from app.browser_driver import CHROMIUM, launch_browser

    if not Path(CHROMIUM).is_file():          # before a build of several minutes
        print(f"error: {CHROMIUM} is missing; `make chromium` installs it", file=sys.stderr)
        return 1
    start = time.perf_counter()
    try:
        html = build_single_page(args.path_output)
        built = time.perf_counter()
        with sync_playwright() as pw:
            browser = launch_browser(pw)
            try:
                pdf = print_pdf(html, args.out, browser)
            finally:
                browser.close()
    except (RuntimeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size = pdf.stat().st_size / 1e6
    print(f"Book PDF: {pdf} ({size:.1f} MB; single-page build {built - start:.0f} s, "
          f"printing {time.perf_counter() - built:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
