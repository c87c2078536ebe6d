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


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = path
    return mods


def _imports(path: Path, mods: dict) -> set[str]:
    """The package's modules that ``path`` imports, at its top or inside a function."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mnist_cnn"):
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in mods else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mnist_cnn")}
    return {name for name in found if name in mods}


def test_the_package_import_graph_has_no_cycle():
    mods = _modules()
    graph = {name: _imports(path, mods) - {name} for name, path in mods.items()}
    done, on_path = set(), []

    def visit(name):
        if name in on_path:
            raise AssertionError(f"import cycle: {' -> '.join(on_path[on_path.index(name):])}"
                                 f" -> {name}")
        if name in done:
            return
        on_path.append(name)
        for other in sorted(graph[name]):
            visit(other)
        on_path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
    # the check can fail: a graph with a cycle is found
    graph["mnist_cnn.data"] = graph["mnist_cnn.data"] | {"mnist_cnn.paths"}
    graph["mnist_cnn.paths"] = graph["mnist_cnn.paths"] | {"mnist_cnn.data"}
    done.clear()
    try:
        visit("mnist_cnn.data")
    except AssertionError as exc:
        assert "mnist_cnn.data -> mnist_cnn.paths -> mnist_cnn.data" in str(exc)
    else:
        raise AssertionError("a planted cycle was not found")


def test_every_library_function_is_under_60_lines():
    import ast

    long = [f"{path.relative_to(REPO)}:{node.lineno} {node.name}: "
            f"{node.end_lineno - node.lineno + 1} lines"
            for path in sorted(PACKAGE.rglob("*.py"))
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 >= 60]
    assert long == []
