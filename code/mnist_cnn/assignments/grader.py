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
import os
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
    warning: str = ""                                           # for the teacher to read

    @property
    def total(self) -> float:
        return float(sum(self.scores.values()))

    @property
    def out_of(self) -> float:
        if self.possible:
            return float(sum(self.possible.values()))
        a = ASSIGNMENTS.get(self.assignment)
        return float(a.points) if a else 0.0


def _read(path: Path) -> dict:
    if not Path(path).is_file():
        raise ValueError("no such file")
    try:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not a readable notebook (.ipynb JSON): {e}") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError("not a notebook (no list of cells)")
    return nb


def assignment_of(path: Path) -> str:
    """The assignment a notebook belongs to (its otter metadata), or raise ValueError
    saying why it cannot be read."""
    name = ((_read(path).get("metadata") or {}).get("otter") or {}).get("assignment_name")
    if name not in ASSIGNMENTS:
        raise ValueError(f"the notebook names no known assignment (metadata otter."
                         f"assignment_name is {name!r}; known: {', '.join(ASSIGNMENTS)}); "
                         "pass --autograder to grade it as that autograder's assignment")
    return name


# What a submission has no reason to touch: the grader's own code and Python's hooks.
_TAMPERING = ("grade_case", "grade_part", "mnist_cnn.assignments.", "assignments import",
              "setprofile", "settrace", "setitimer", "signal.alarm", "otter")


def tampering(nb: dict) -> list[str]:
    """Code cells (other than the generated set-up) that touch the grader: otter runs
    the checks inside the student's own Python, so a teacher should read these."""
    found = []
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        src = "".join(cell.get("source", ""))
        lines = [ln for ln in src.splitlines() if ln.strip() not in _GENERATED_LINES]
        hits = sorted({t for t in _TAMPERING for ln in lines if t in ln})
        if hits:
            found.append(f"cell {i + 1} mentions {', '.join(hits)}")
    return found


_GENERATED_LINES = {"from mnist_cnn.assignments import check, example"} | {
    f'check("{p.name}", {p.name})' for a in ASSIGNMENTS.values() for p in a.parts}


def _graded_assignment(zip_path: Path) -> str | None:
    """The assignment an otter autograder zip grades (its otter_config.json)."""
    try:
        with zipfile.ZipFile(zip_path) as z:
            return json.loads(z.read("otter_config.json")).get("assignment_name")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


class _NotGraded(Exception):
    """Why otter gave no results for a notebook (the report's error)."""


def grade_notebook(path, autograder=None, timeout: float = NOTEBOOK_SECONDS,
                   autograders: Path = DEFAULT_AUTOGRADERS) -> Report:
    """Grade one notebook; never raises for a bad submission (see ``Report.error``).

    The steps: read the notebook and the assignment it is for, find that
    assignment's autograder, note any cell that touches the grader, have otter
    run a copy of the notebook, and score each part from otter's results.
    """
    path = Path(path)
    report = Report(str(path))
    try:
        nb, report.assignment = _submission(path, autograder)
        zip_path = _autograder_zip(report.assignment, autograder, autograders)
    except ValueError as e:
        report.error = str(e)
        return report
    touched = tampering(nb)
    if touched:
        report.warning = ("this notebook touches the grader's code (" + "; ".join(touched)
                          + "): read it before trusting the score")
    try:
        results = _run_otter(nb, path.name, report.assignment, zip_path, timeout)
    except _NotGraded as e:
        report.error = str(e)
        return report
    _score(report, results)
    return report


def _submission(path: Path, autograder) -> tuple[dict, str]:
    """(notebook, assignment): the assignment named in the notebook's metadata or,
    if that is lost, the one ``autograder`` grades (the teacher named it).
    ValueError says why the notebook cannot be graded."""
    graded = _graded_assignment(Path(autograder)) if autograder else None
    nb = _read(path)
    try:
        return nb, assignment_of(path)
    except ValueError:
        if graded is None:
            raise
        return nb, graded                 # metadata lost: the teacher named it


def _autograder_zip(assignment: str, autograder, autograders: Path) -> Path:
    """The autograder to grade ``assignment`` with: ``autograder`` if given, else
    the one ``make assignments`` wrote to ``autograders``. ValueError if it is
    missing or grades another assignment."""
    zip_path = Path(autograder) if autograder else autograders / f"{assignment}.zip"
    if not zip_path.is_file():
        raise ValueError(f"no autograder at {zip_path}: run `make assignments` first "
                         "(from the repository's root) or pass --autograder")
    graded = _graded_assignment(zip_path)
    if graded != assignment:
        raise ValueError(f"the notebook is for {assignment!r} but {zip_path} grades "
                         f"{graded!r}")
    return zip_path


def _run_otter(nb: dict, name: str, assignment: str, zip_path: Path, timeout: float) -> dict:
    """otter's results (its ``results.json``) for the notebook ``nb``, run in its own
    process in a temporary folder; _NotGraded if it took longer than ``timeout``
    seconds or wrote no results."""
    with tempfile.TemporaryDirectory() as out:
        # otter reads the assignment's name from the notebook: give a copy that has it.
        nb.setdefault("metadata", {})["otter"] = {"assignment_name": assignment}
        submission = Path(out) / "submission" / name
        submission.parent.mkdir()
        submission.write_text(json.dumps(nb))
        cmd = [sys.executable, "-m", "otter", "run", "--no-logo", "-a", str(zip_path.resolve()),
               "-o", out, str(submission)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  cwd=out)
        except subprocess.TimeoutExpired:
            raise _NotGraded(f"grading did not finish within {timeout:g} s") from None
        results = Path(out) / "results.json"
        if not results.is_file():
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            raise _NotGraded("the grader could not run this notebook: " + " | ".join(tail))
        return json.loads(results.read_text())


def _score(report: Report, results: dict) -> None:
    """Each part of the report's assignment scored from otter's ``results``, in the
    catalogue's order: points, points possible, and the feedback of a part not
    fully earned (a part otter did not report scores 0)."""
    parts = {p.name: p for p in ASSIGNMENTS[report.assignment].parts}
    tests = {t.get("name"): t for t in results.get("tests", [])}
    for name, part in parts.items():          # the catalogue's order; a missing part: 0
        test = tests.get(name, {})
        report.scores[name] = float(test.get("score") or 0)
        report.possible[name] = float(test.get("max_score") or part.points)
        if report.scores[name] < report.possible[name]:
            report.feedback[name] = _clean(test.get("output", "").strip()) or (
                "not graded: the grader found no result for this part")


def _clean(output: str) -> str:
    """otter's report of a part without its "Error at line N in test ..." lines,
    which show the grader's call, not the student's code."""
    lines = output.splitlines()
    keep, skip = [], False
    for line in lines:
        if line.strip().startswith("Error at line "):
            skip = True             # this line and the grader's call below it
            continue
        if skip:
            skip = False
            continue
        keep.append(line.replace("Feedback: ", "", 1))
    return "\n".join(keep)


def format_report(report: Report, feedback: bool = True) -> str:
    head = f"{report.path}: "
    if report.error:
        return head + f"0 points - {report.error}"
    lines = [head + f"{report.assignment}, {report.total:g}/{report.out_of:g} points"]
    if report.warning:
        lines.append(f"  WARNING: {report.warning}")
    for name in report.scores:
        lines.append(f"  {name}: {report.scores[name]:g}/{report.possible[name]:g}")
        if feedback and name in report.feedback:
            lines.append("    " + report.feedback[name].replace("\n", "\n    "))
    return "\n".join(lines)


def write_csv(reports: list[Report], path) -> None:
    """One row per notebook; one column per part of every assignment graded."""
    parts = []
    for r in reports:
        parts += [p for p in r.scores if p not in parts]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["notebook", "assignment", *parts, "total", "out_of", "error", "warning"])
        for r in reports:
            w.writerow([r.path, r.assignment, *[r.scores.get(p, "") for p in parts],
                        r.total, r.out_of, r.error, r.warning])


def feedback_names(paths: list[str]) -> list[str]:
    """One file name per notebook, never the same twice: the notebook's name, or,
    where names repeat (alice/pooling.ipynb, bob/pooling.ipynb), its path below the
    folder the notebooks share, joined with '__'."""
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) == len(stems):
        return [f"{s}.txt" for s in stems]
    resolved = [Path(p).resolve() for p in paths]
    root = Path(os.path.commonpath([str(p.parent) for p in resolved]))
    names = ["__".join(p.relative_to(root).with_suffix("").parts) + ".txt" for p in resolved]
    seen: dict[str, int] = {}
    for i, n in enumerate(names):               # the same file given twice
        seen[n] = seen.get(n, 0) + 1
        if seen[n] > 1:
            names[i] = n[:-4] + f"_{seen[n]}.txt"
    return names


def cli_grade(args) -> int:
    from concurrent.futures import ThreadPoolExecutor

    jobs = max(1, args.jobs)
    with ThreadPoolExecutor(jobs) as pool:     # each notebook runs in its own process
        futures = [pool.submit(grade_notebook, path, args.autograder, args.timeout)
                   for path in args.notebooks]
        reports = []
        for future in futures:                  # printed in the order given
            report = future.result()
            print(format_report(report, feedback=not args.quiet), flush=True)
            reports.append(report)
    if args.feedback:
        out = Path(args.feedback)
        out.mkdir(parents=True, exist_ok=True)
        for report, name in zip(reports, feedback_names([r.path for r in reports]),
                                strict=True):
            (out / name).write_text(format_report(report) + "\n", encoding="utf-8")
        print(f"Feedback for each student: {out}/ (one .txt per notebook)")
    if args.csv:
        write_csv(reports, args.csv)
        print(f"Gradebook: {args.csv}")
    return 0
