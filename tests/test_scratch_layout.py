"""How the engine is laid out: imports run one way with no cycle anywhere in the
package, the plain engine holds no speed machinery, and every function a
chapter displays is a short one from the plain path."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "code" / "mnist_cnn"
PLAIN = ("functional", "layers", "network", "optim")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, modules) -> set[str]:
    """Package modules imported anywhere in ``path`` (also inside functions);
    ``from pkg import name`` counts as importing pkg.name when that is a module."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}".rstrip(".")
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def _graph():
    modules = _modules()
    return {m: _imports(p, modules) for m, p in modules.items()}


def _cycle(graph):
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_package():
    assert _cycle(_graph()) is None


def test_imports_run_one_way_through_the_engine():
    """fast -> train -> network -> layers -> functional, never back: the plain engine
    ends at fit, and the speed layer sits on top of it (fit is handed an engine)."""
    graph = _graph()
    order = ["mnist_cnn.scratch.fast", "mnist_cnn.scratch.train", "mnist_cnn.scratch.network",
             "mnist_cnn.scratch.layers", "mnist_cnn.scratch.functional"]
    rank = {m: i for i, m in enumerate(order)}

    def level(module):
        for m in order:
            if module == m or module.startswith(m + "."):
                return rank[m]
        return None

    for module, deps in graph.items():
        for dep in deps:
            if level(module) is not None and level(dep) is not None:
                assert level(dep) >= level(module), f"{module} imports {dep}"
    assert "mnist_cnn.scratch.network" in graph["mnist_cnn.scratch.fast.engine"]
    assert not any(d.startswith("mnist_cnn.scratch.fast") for d in graph["mnist_cnn.scratch.train"])


@pytest.mark.parametrize("name", PLAIN)
def test_the_plain_engine_holds_no_speed_machinery(name):
    text = (PACKAGE / "scratch" / f"{name}.py").read_text()
    banned = r"\b(threading|concurrent|multiprocessing|subprocess|ctypes|threadpoolctl|" \
             r"mallopt|shards?|ThreadPoolExecutor)\b"
    assert re.findall(banned, text) == []
    assert 'cache["kind"]' not in text


def _code_cells(text: str):
    for cell in re.findall(r"^```\{code-cell\}[^\n]*\n(.*?)^```", text, flags=re.M | re.S):
        body = re.sub(r"^---\n.*?^---\n", "", cell, flags=re.M | re.S)   # cell options
        body = re.sub(r"^:\w+:.*$", "", body, flags=re.M)
        try:
            yield ast.parse(body)
        except SyntaxError:
            continue


def _shown_functions():
    """(chapter, expression, object) for every ``source(X)`` and
    ``Code(inspect.getsource(X))`` in a chapter, resolved with the chapter's own
    mnist_cnn imports."""
    shown = []
    for chapter in sorted((REPO / "book").glob("*.md")):
        namespace: dict = {}
        calls = []
        for tree in _code_cells(chapter.read_text()):
            for node in ast.walk(tree):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = [node.module or ""] if isinstance(node, ast.ImportFrom) \
                        else [a.name for a in node.names]
                    if all(n.startswith("mnist_cnn") for n in names):
                        exec(ast.unparse(node), namespace)          # noqa: S102 - our book
                elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                        and node.func.id in ("source", "Code") and node.args:
                    arg = node.args[0]
                    if isinstance(arg, ast.Constant):
                        continue        # source("path", ...): a file, not a library object
                    if isinstance(arg, ast.Call) and ast.unparse(arg.func) == "inspect.getsource":
                        arg = arg.args[0]
                    calls.append(ast.unparse(arg))
        shown += [(chapter.name, expr, eval(expr, namespace)) for expr in calls]  # noqa: S307
    return shown


def test_chapters_show_library_functions():
    shown = _shown_functions()
    assert len(shown) >= 6
    assert {expr for _, expr, _ in shown} >= {"F.conv2d_backward", "F.max_pool2d_backward",
                                              "network.Sequential.loss_and_backward",
                                              "optim.Adam.step"}


@pytest.mark.parametrize(("chapter", "expr", "obj"), _shown_functions(),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_a_shown_function_is_from_the_plain_path(chapter, expr, obj):
    # Its length is checked with every other display (files too, with the reasoned
    # exceptions) in tests/test_chapters.py::test_a_shown_piece_of_code_is_short.
    assert "scratch.fast" not in obj.__module__ or chapter == "fast.md"
