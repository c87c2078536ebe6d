"""The page's own style sheet and script, and the names they share with the app and the
browser harness (the page's DOM contract).

``page.css`` and ``page.js`` sit beside this file and are read once per process, when
the app starts (found from this module's folder, wherever the app is deployed). Where
they name a part of the contract they write a placeholder, ``$pending`` or
``${phone_max_width}`` (:class:`string.Template`), filled from :data:`NAMES`: every
name below is spelled once, here. (So the two files use no other ``$``: a JavaScript
template literal would be taken for a placeholder and stop the app at start-up.)

The app imports this module as ``page_assets`` (Streamlit puts the script's folder on
the path); the harness (``app/browser_driver.py``, ``benchmarks/``) as
``app.page_assets``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from string import Template

HERE = Path(__file__).resolve().parent

# The DOM contract between the app (server), its page script and the harness.
# On <html> while the answer on screen may not be the answer for the drawing on the
# canvas (set and cleared by page.js only; page.css dims the answer and labels it).
PENDING = "data-digit-pending"
# Every answer area starts with a hidden mark, <span data-digit-run=... data-digit-strokes=...>:
RUN = "data-digit-run"          # a token new in every server run that renders the answer
STROKES = "data-digit-strokes"  # the stroke count of the drawing the answer was computed
#                                 for (absent when the input is an upload, not a drawing)
# The st.container keys (Streamlit gives each container the class st-key-<key>).
ANSWER_KEY = "answer"         # the answer: the mark, then the prediction, prompt or error
RESULTS_KEY = "results"       # the details beside it (dimmed with it)
SCRIPT_KEY = "page_script"    # holds the page script (hidden)
PHONE_MAX_WIDTH = 640         # Streamlit stacks columns below this width (px)

NAMES = {"pending": PENDING, "run": RUN, "strokes": STROKES, "answer_key": ANSWER_KEY,
         "results_key": RESULTS_KEY, "script_key": SCRIPT_KEY,
         "phone_max_width": PHONE_MAX_WIDTH}


def fill(text: str) -> str:
    """``text`` with its placeholders filled from :data:`NAMES`: KeyError or ValueError
    for any other ``$`` (the harness fills its own scripts with it too)."""
    return Template(text).substitute(NAMES)


def read(name: str) -> str:
    """``name`` (page.css or page.js) with its placeholders filled."""
    return fill((HERE / name).read_text(encoding="utf-8"))


@functools.cache
def style() -> str:
    """The page's style sheet, as the ``<style>`` element the app adds to the page."""
    return f"<style>\n{read('page.css')}</style>"


@functools.cache
def script() -> str:
    """The page's script (marks a stale answer as pending), as a ``<script>`` element,
    without its comment lines (the page gets it again with every full rerun)."""
    code = [line for line in read("page.js").splitlines()
            if not line.lstrip().startswith("//")]
    return "<script>\n" + "\n".join(code) + "\n</script>"


def answer_mark(run: str, strokes: int | None) -> str:
    """The hidden mark that starts an answer area: the run that rendered it and, for a
    drawing, its stroke count (see page.js)."""
    counted = "" if strokes is None else f' {STROKES}="{int(strokes)}"'
    return f'<span {RUN}="{run}"{counted}></span>'
