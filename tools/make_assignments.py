"""Write the graded assignments: student notebooks, answer keys and autograders.

    python -m tools.make_assignments [--seed N] [--check]     (make assignments)

Everything comes from :mod:`mnist_cnn.assignments` (the parts, their checks, the
mistakes the grader names) and from the course library itself (each stub is the
library function's signature and docstring; each answer is its source), so a
notebook cannot drift from the code the book teaches:

- ``assignments/<name>.ipynb``: the student notebooks (committed, so Colab can
  open them from GitHub; a test fails when one is stale);
- ``_build/assignments/key/<name>.ipynb``: the answer keys (the library's code);
- ``_build/assignments/autograder/<name>.zip``: otter-grader's autograders, with
  the hidden checks drawn from ``--seed`` (default: a fresh random seed, printed
  and kept in ``_build/assignments/SEED``): students never see those inputs.

Grade with ``python -m mnist_cnn grade <notebooks>``; the page "For teachers"
(book/teachers.md) explains the cycle.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat
from mnist_cnn._io import atomic_write
from mnist_cnn.assignments import ASSIGNMENTS, PUBLIC_SEED
from mnist_cnn.assignments.core import Assignment, Part, solution_source, stub_source
from mnist_cnn.assignments.otter_plugin import CELL_SECONDS

from tools import colab_notebooks

ROOT = Path(__file__).resolve().parents[1]
STUDENT_DIR = ROOT / "assignments"
BUILD_DIR = ROOT / "_build" / "assignments"
PLUGIN = "mnist_cnn.assignments.otter_plugin.CellTimeLimit"


def _book_url() -> str:
    import yaml
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    return config.get("html", {}).get("baseurl", "").rstrip("/") + "/book/"


def _imports(assignment: Assignment) -> str:
    """One import cell for all parts: each part's set-up, given helpers merged per
    module."""
    lines: list[str] = []
    helpers: dict[str, list[str]] = {}
    for part in assignment.parts:
        for line in part.setup_source().splitlines():
            if line.startswith("from mnist_cnn.scratch.functional import"):
                continue
            if line and line not in lines:
                lines.append(line)
        for h in part.given:
            names = helpers.setdefault(h.__module__, [])
            if h.__name__ not in names:
                names.append(h.__name__)
    given = [f"from {module} import {', '.join(names)}" for module, names in helpers.items()]
    std = [x for x in lines if x.startswith("import math")]
    third = [x for x in lines if "numpy" in x]
    ours = [x for x in lines if "mnist_cnn" in x]
    return "\n".join([*std, "", *third, "", "from mnist_cnn.assignments import check, example",
                      *ours, *given]) + "\n"


def _given(part: Part) -> str:
    if not part.given:
        return ""
    items = []
    for helper in part.given:
        doc = (helper.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        items.append(f"- `{helper.__name__}`: {doc}")
    return "\n\nGiven (already imported; call them, do not rewrite them):\n\n" + "\n".join(items)


def _example_note(part: Part) -> str:
    call = f'`inputs, expected = example("{part.name}")`'
    if part.runner is None or part.outputs == ("out",):
        return (f"The checks here run on the example: {call} gives its inputs (your "
                "function's arguments) and the result to match, to compare by hand.")
    return (f"The checks here run on the example: {call} gives the check's set-up "
            f"({', '.join(f'`{k}`' for k in part.probe())}) and what it compares "
            f"({', '.join(part.outputs)}, each array flattened into one).")


def _checks_table(part: Part) -> str:
    rows = ["| check | points | when |", "|---|---|---|"]
    for c in part.checks:
        rows.append(f"| {c.title} | {c.points} | "
                    f"{'in the grader only (inputs you have not seen)' if c.hidden else 'here'} |")
    return "\n".join(rows)


def notebook(assignment: Assignment, key: bool = False, repo_url: str | None = None,
             checkout: str = colab_notebooks.COLAB_CHECKOUT) -> nbformat.NotebookNode:
    """The student notebook (stubs) or, with ``key``, the answer key (the library's code).
    Its Colab set-up cell clones ``repo_url`` (default: _config.yml's) into ``checkout``."""
    cells = []
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    parts = "\n".join(f"| {i} | `{p.name}` | {p.points} |"
                      for i, p in enumerate(assignment.parts, 1))
    chapter = f"{_book_url()}{assignment.chapter}.html"
    cells.append(md(
        f"# {'Answer key: ' if key else ''}{assignment.title}\n\n{assignment.intro} "
        f"The chapter that teaches it: [{assignment.chapter}]({chapter}).\n\n"
        f"| part | write | points |\n|---|---|---|\n{parts}\n\n"
        f"**Total: {assignment.points} points.**\n\n"
        "How to work: run the set-up cells, then for each part write the function in "
        "its cell (keep its name and signature) and run the check cell below it. The "
        "checks print what is wrong and, for common mistakes, which mistake it is. The "
        "grader runs them again, and hidden checks on inputs you have not seen. Hand in "
        "this notebook (.ipynb). Using the course library's own solution (importing, "
        "inheriting or calling it) scores 0."
        "\n\n*Generated from the course library by `make assignments`: do not edit by "
        "hand.*"))
    cells.append(md(colab_notebooks.SETUP_NOTE))
    url, branch = colab_notebooks.repository()
    cells.append(code(colab_notebooks.setup_cell_source(repo_url or url, branch, checkout),
                      id="colab-setup"))
    cells.append(code(_imports(assignment)))
    for i, part in enumerate(assignment.parts, 1):
        cells.append(md(f"## Part {i}: `{part.name}` ({part.points} points)\n\n{part.intro}"
                        f"{_given(part)}\n\n{_checks_table(part)}\n\n"
                        f"{_example_note(part)}"))
        cells.append(code(solution_source(part) if key else stub_source(part)))
        cells.append(code(f'check("{part.name}", {part.name})'))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = nbformat.from_dict({
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "otter": {"assignment_name": assignment.name},
    })
    colab_notebooks._stable_ids(nb.cells)
    nbformat.validate(nb)
    return nb


def test_file(part: Part, seed: int, call_seconds: float | None = None) -> str:
    """otter's test file for one part: one test case per check, each calling the
    library's grader (so the checks live in one place)."""
    lines = [
        f'"""{part.name}: the grader\'s checks (written by `make assignments`; '
        'do not edit)."""',
        "",
        "from otter.test_files import test_case",
        "",
        "from mnist_cnn.assignments import grade_case",
        "",
        "OK_FORMAT = False",
        f'name = "{part.name}"',
        f"points = {part.points}",
        f"SEED = {seed}            # the hidden checks' inputs",
        f"PUBLIC_SEED = {PUBLIC_SEED}     # the checks the notebook runs itself",
        f"SECONDS = {call_seconds!r}   # per call of student code (None: the default)",
    ]
    for i, c in enumerate(part.checks):
        lines += ["", "",
                  f"@test_case(name={c.title!r}, points={c.points}, hidden={c.hidden})",
                  f"def check_{i}({part.name}):",
                  f'    grade_case("{part.name}", {i}, {part.name}, '
                  f'{"SEED" if c.hidden else "PUBLIC_SEED"}, SECONDS)']
    return "\n".join(lines) + "\n"


def autograder(assignment: Assignment, seed: int, out: Path,
               cell_seconds: int = CELL_SECONDS, call_seconds: float | None = None) -> Path:
    """Write otter's autograder zip for ``assignment`` to ``out``: each notebook cell
    gets ``cell_seconds``, each call of student code in a check ``call_seconds``."""
    with tempfile.TemporaryDirectory() as tmp:
        tests = Path(tmp) / "tests"
        tests.mkdir()
        for part in assignment.parts:
            (tests / f"{part.name}.py").write_text(test_file(part, seed, call_seconds))
        config = {"assignment_name": assignment.name, "lang": "python",
                  "plugins": [{PLUGIN: {"seconds": cell_seconds}}]}
        (Path(tmp) / "otter_config.json").write_text(json.dumps(config, indent=2))
        out.parent.mkdir(parents=True, exist_ok=True)
        from otter.generate import main as otter_generate
        otter_generate(tests_dir=str(tests), output_path=str(out.resolve()),
                       config=str(Path(tmp) / "otter_config.json"),
                       no_requirements=True, no_environment=True)
    return out


def render(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the hidden checks' inputs (default: a fresh random one)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a student notebook is missing or stale")
    parser.add_argument("--notebooks-only", action="store_true",
                        help="write the student notebooks only")
    args = parser.parse_args(argv)
    stale = []
    for assignment in ASSIGNMENTS.values():
        path = STUDENT_DIR / f"{assignment.name}.ipynb"
        text = render(notebook(assignment))
        if path.is_file() and path.read_text() == text:
            continue
        stale.append(str(path.relative_to(ROOT)))
        if not args.check:
            path.parent.mkdir(exist_ok=True)
            with atomic_write(path, "w") as fh:
                fh.write(text)
    if args.check:
        if stale:
            print(f"Stale assignment notebooks (run `make assignments`): {', '.join(stale)}")
            return 1
        print(f"Assignment notebooks: {len(ASSIGNMENTS)} up to date")
        return 0
    print(f"Student notebooks: {len(ASSIGNMENTS)} in assignments/, {len(stale)} written")
    if args.notebooks_only:
        return 0
    seed = secrets.randbelow(2**31) if args.seed is None else args.seed
    shutil.rmtree(BUILD_DIR, ignore_errors=True)
    for assignment in ASSIGNMENTS.values():
        key = BUILD_DIR / "key" / f"{assignment.name}.ipynb"
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_text(render(notebook(assignment, key=True)))
        autograder(assignment, seed, BUILD_DIR / "autograder" / f"{assignment.name}.zip")
    (BUILD_DIR / "SEED").write_text(f"{seed}\n")
    print(f"Answer keys in {BUILD_DIR.relative_to(ROOT)}/key, autograders in "
          f"{BUILD_DIR.relative_to(ROOT)}/autograder (hidden checks' seed {seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
