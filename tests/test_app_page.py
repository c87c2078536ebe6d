"""The app's page style and script (app/page.css, app/page.js): read from the app's
folder wherever it is deployed, their DOM contract filled in from app/page_assets.py,
and a script that never depends on time."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app import page_assets
from app.page_assets import NAMES, PENDING, RUN, STROKES

APP_DIR = Path(page_assets.__file__).parent


def test_every_placeholder_is_filled_and_the_contract_is_used():
    css, js = page_assets.read("page.css"), page_assets.read("page.js")
    for text in (css, js):
        assert "$" not in text
    for name in (PENDING, RUN):
        assert name in css
    for name in (PENDING, RUN, STROKES, f".st-key-{NAMES['answer_key']}"):
        assert name in js
    assert f"max-width: {NAMES['phone_max_width']}px" in css
    assert page_assets.style().startswith("<style>") and page_assets.script().endswith(
        "</script>")


def test_a_stray_dollar_sign_stops_the_app_at_start_up():
    with pytest.raises(KeyError):
        page_assets.fill("const x = `${y}`;")


def test_the_page_script_reads_no_clock():
    """The rule at the top of page.js: a stale answer stays marked until its answer comes,
    however slow the server: nothing in the script waits for time to pass."""
    js = (APP_DIR / "page.js").read_text()
    code = "\n".join(line for line in js.splitlines() if not line.lstrip().startswith("//"))
    clocks = re.findall(r"setTimeout|setInterval|requestAnimationFrame|requestIdleCallback"
                        r"|Date\b|performance\.now", code)
    assert clocks == []
    assert "THE RULE" in js  # stated where the script starts
    assert "//" not in page_assets.script().split("\n", 2)[1]  # served without comments


def test_the_assets_are_found_beside_the_module_wherever_it_is(tmp_path):
    """As on a deployment: the app's folder elsewhere, started from another directory."""
    copy = tmp_path / "deployed" / "app"
    shutil.copytree(APP_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import page_assets as p; s, j = p.style(), p.script(); "
            "print(len(s) > 1000, len(j) > 1000, p.HERE)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, env={"PYTHONPATH": str(copy)}, timeout=60, check=True)
    assert out.stdout.split() == ["True", "True", str(copy)]


def test_answer_mark():
    assert page_assets.answer_mark("ab12", 3) == f'<span {RUN}="ab12" {STROKES}="3"></span>'
    assert page_assets.answer_mark("ab12", None) == f'<span {RUN}="ab12"></span>'
