"""The installable package holds library code only: the harnesses that drive a
browser, load or faults live in benchmarks/."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "code" / "mnist_cnn"


def test_no_package_module_names_a_browser_psutil_or_the_app_folder():
    pattern = re.compile(r"chromium|playwright|psutil|streamlit_app|[\"'/]app[\"'/]", re.I)
    offenders = [f"{p.relative_to(REPO)}:{n}: {line.strip()}"
                 for p in sorted(PACKAGE.rglob("*.py"))
                 for n, line in enumerate(p.read_text().splitlines(), 1)
                 if pattern.search(line)]
    assert offenders == []


def test_the_harnesses_live_outside_the_package():
    for name in ("browser", "load", "faults"):
        assert (REPO / "benchmarks" / f"{name}.py").is_file()
        assert not (PACKAGE / "bench" / f"{name}.py").exists()
