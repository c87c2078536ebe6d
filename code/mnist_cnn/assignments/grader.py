"""Grade handed-in notebooks: ``python -m mnist_cnn grade NOTEBOOK...``.

Each notebook is graded by otter-grader (``otter run``: no Docker, the notebook
executed in this Python, then every check of every part), in its own process
with a time limit, so one broken, looping or crashing submission is reported
and the rest of the class is still graded. The autograder is the one
``make assignments`` wrote for the notebook's assignment (its name is in the
notebook's metadata), or ``--autograder``.

Prints each part's points and the feedback of every failed check; ``--csv``
writes one row per notebook (the gradebook).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from . import ASSIGNMENTS

DEFAULT_AUTOGRADERS = Path("_build") / "assignments" / "autograder"
NOTEBOOK_SECONDS = 1800


@dataclass
class Report:
    path: str
    assignment: str = ""
    scores: dict[str, float] = field(default_factory=dict)     # part -> points earned
    possible: dict[str, float] = field(default_factory=dict)
    feedback: dict[str, str] = field(default_factory=dict)     # part -> failed checks
    error: str = ""                                             # why nothing was graded

    @property
    def total(self) -> float:
        return float(sum(self.scores.values()))

    @property
    def out_of(self) -> float:
        if self.possible:
            return float(sum(self.possible.values()))
        a = ASSIGNMENTS.get(self.assignment)
        return float(a.points) if a else 0.0


def assignment_of(path: Path) -> str:
    """The assignment a notebook belongs to (its otter metadata), or raise ValueError
    saying why it cannot be read."""
    try:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not a readable notebook (.ipynb JSON): {e}") from None
    name = (nb.get("metadata", {}).get("otter") or {}).get("assignment_name") \
        if isinstance(nb, dict) else None
    if name not in ASSIGNMENTS:
        raise ValueError(f"the notebook names no known assignment (metadata otter."
                         f"assignment_name is {name!r}; known: {', '.join(ASSIGNMENTS)})")
    return name


def _graded_assignment(zip_path: Path) -> str | None:
    """The assignment an otter autograder zip grades (its otter_config.json)."""
    try:
        with zipfile.ZipFile(zip_path) as z:
            return json.loads(z.read("otter_config.json")).get("assignment_name")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def grade_notebook(path, autograder=None, timeout: float = NOTEBOOK_SECONDS,
                   autograders: Path = DEFAULT_AUTOGRADERS) -> Report:
    """Grade one notebook; never raises for a bad submission (see ``Report.error``)."""
    path = Path(path)
    report = Report(str(path))
    try:
        report.assignment = assignment_of(path)
    except ValueError as e:
        report.error = str(e)
        return report
    zip_path = Path(autograder) if autograder else autograders / f"{report.assignment}.zip"
    if not zip_path.is_file():
        report.error = (f"no autograder at {zip_path}: run `make assignments` first "
                        "(or pass --autograder)")
        return report
    graded = _graded_assignment(zip_path)
    if graded != report.assignment:
        report.error = (f"the notebook is for {report.assignment!r} but {zip_path} grades "
                        f"{graded!r}")
        return report
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "otter", "run", "--no-logo", "-a", str(zip_path.resolve()),
               "-o", out, str(path.resolve())]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  cwd=out)
        except subprocess.TimeoutExpired:
            report.error = f"grading did not finish within {timeout:g} s"
            return report
        results = Path(out) / "results.json"
        if not results.is_file():
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            report.error = "the grader could not run this notebook: " + " | ".join(tail)
            return report
        data = json.loads(results.read_text())
    parts = {p.name: p for p in ASSIGNMENTS[report.assignment].parts}
    for test in data.get("tests", []):
        name = test.get("name")
        if name not in parts:
            continue
        report.scores[name] = float(test.get("score") or 0)
        report.possible[name] = float(test.get("max_score") or parts[name].points)
        if report.scores[name] < report.possible[name]:
            report.feedback[name] = test.get("output", "").strip()
    for name, part in parts.items():          # a part otter could not load scores 0
        report.scores.setdefault(name, 0.0)
        report.possible.setdefault(name, float(part.points))
    return report


def format_report(report: Report, feedback: bool = True) -> str:
    head = f"{report.path}: "
    if report.error:
        return head + f"0 points - {report.error}"
    lines = [head + f"{report.assignment}, {report.total:g}/{report.out_of:g} points"]
    for name in report.scores:
        lines.append(f"  {name}: {report.scores[name]:g}/{report.possible[name]:g}")
        if feedback and name in report.feedback:
            lines.append("    " + report.feedback[name].replace("\n", "\n    "))
    return "\n".join(lines)


def write_csv(reports: list[Report], path) -> None:
    parts = []
    for r in reports:
        parts += [p for p in r.scores if p not in parts]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["notebook", "assignment", *parts, "total", "out_of", "error"])
        for r in reports:
            w.writerow([r.path, r.assignment, *[r.scores.get(p, "") for p in parts],
                        r.total, r.out_of, r.error])


def cli_grade(args) -> int:
    reports = []
    for path in args.notebooks:
        report = grade_notebook(path, args.autograder, args.timeout)
        print(format_report(report, feedback=not args.quiet), flush=True)
        reports.append(report)
    if args.csv:
        write_csv(reports, args.csv)
        print(f"Gradebook: {args.csv}")
    return 0
