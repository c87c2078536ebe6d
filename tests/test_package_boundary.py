"""The installable package holds library code only: the harnesses that drive a
browser, load or faults live in benchmarks/; and its functions are short. (Its import
graph, no cycle and one way through the engine: tests/test_scratch_layout.py.)"""

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


def test_every_library_function_is_under_60_lines():
    import ast

    long = [f"{path.relative_to(REPO)}:{node.lineno} {node.name}: "
            f"{node.end_lineno - node.lineno + 1} lines"
            for path in sorted(PACKAGE.rglob("*.py"))
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 >= 60]
    assert long == []
