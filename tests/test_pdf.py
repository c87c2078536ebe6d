"""The whole book as one PDF (`make pdf`'s two steps, tools/book_pdf.py) on the
session's book build (_build/test-site, see tests/_browser.py): the single-page build
reads the same execution cache (no chapter executed again), Chromium prints it, and
the PDF holds every chapter, its figures, typeset equations and the exercises with
their solutions. Its own module, so that a parallel run (pytest -n) prints the book
while another process checks the site's pages."""

from __future__ import annotations

import re
import time

import pytest

from tests.test_site import CHAPTERS, ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _chapter_source(name: str) -> tuple[str, str]:
    """A chapter's title and the opening words of its first figure caption (the plain
    words before any markup), from its Markdown."""
    text = (ROOT / f"{name}.md").read_text()
    title = re.search(r"^# (.+)$", text, re.M).group(1)
    caption = re.search(r"^ +caption: *[|>]?-?\n?((?:.+\n)+?) +\w+:", text, re.M)
    assert caption, f"{name}: no figure caption in a cell's mystnb metadata"
    fragments = re.split(r"[`$*{}\[\]_]", " ".join(caption.group(1).split()))
    words = next(f for f in fragments if len(f.split()) >= 4).split()
    return title, " ".join(words[:6])


def _plain(text: str) -> str:
    import unicodedata

    text = unicodedata.normalize("NFKC", text)         # ligatures: "ﬁ" is "fi"
    text = text.translate(str.maketrans("\u2018\u2019\u201c\u201d", "''\"\""))
    return " ".join(text.split())


@pytest.fixture(scope="module")
def book_pdf(site_dir, browser, tmp_path_factory):
    """`make pdf`'s two steps on the session's build: the single-page build (chapters
    from the same execution cache, none executed again), printed by Chromium."""
    from tools.book_pdf import build_single_page, print_pdf

    start = time.perf_counter()
    html = build_single_page(site_dir.parents[1], quiet=True)
    built = time.perf_counter()
    pdf = print_pdf(html, tmp_path_factory.mktemp("pdf") / "book.pdf", browser)
    print(f"\nbook PDF: single-page build {built - start:.0f} s, "
          f"printed in {time.perf_counter() - built:.0f} s, {pdf.stat().st_size / 1e6:.1f} MB")
    return pdf


def test_the_book_prints_as_one_pdf(book_pdf):
    """The PDF holds every chapter (its title and its first figure's caption), the
    figures, typeset equations (no TeX source left) and the exercises with their
    solutions."""
    from pypdf import PdfReader

    reader = PdfReader(book_pdf)
    text = _plain("\n".join(page.extract_text() or "" for page in reader.pages))
    missing = []
    for name in CHAPTERS:
        title, caption = _chapter_source(name)
        missing += [f"{name}: {what!r}" for what in (_plain(title), _plain(caption))
                    if what not in text]
    assert missing == []
    images = sum(1 for page in reader.pages
                 for obj in (page.get("/Resources") or {}).get("/XObject", {}).values()
                 if obj.get_object().get("/Subtype") == "/Image")
    assert images >= len(CHAPTERS)
    # (not "\\(": the code of a chapter has one, in a regular expression)
    assert not re.search(r"\$\$|\\frac|\\begin\{|\\sum_|\\times", text), "TeX left untypeset"
    exercises = sum(len(re.findall(r"^```\{exercise\}", (ROOT / f"{n}.md").read_text(), re.M))
                    for n in CHAPTERS)
    numbered = {int(n) for n in re.findall(r"Exercise (\d+)", text)}
    assert len(numbered) >= exercises
    assert text.count("Solution to") >= exercises
