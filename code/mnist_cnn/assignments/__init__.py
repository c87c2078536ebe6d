"""Graded assignments: the library's core functions, written again by students.

In a student notebook::

    from mnist_cnn.assignments import check
    check("conv2d_naive", conv2d_naive)     # the public checks, with feedback

The grader (``python -m mnist_cnn grade``, built on otter-grader) runs the
same checks plus hidden ones on inputs drawn from the teacher's seed
(:func:`grade_case`). ``make assignments`` writes the notebooks, the answer key
and the autograder (``tools/make_assignments.py``); the page "For teachers"
explains the whole cycle.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from .catalog import ASSIGNMENTS
from .core import Assignment, Feedback, Part, from_library, limit_calls

__all__ = ["ASSIGNMENTS", "PUBLIC_SEED", "check", "example", "grade_case", "grade_part",
           "find_part", "Result"]

PUBLIC_SEED = 0      # the public checks' inputs; hidden checks use the teacher's seed


def find_part(name: str) -> tuple[Assignment, Part]:
    """The assignment and part whose function (or class) is called ``name``."""
    for assignment in ASSIGNMENTS.values():
        for part in assignment.parts:
            if part.name == name:
                return assignment, part
    names = [p.name for a in ASSIGNMENTS.values() for p in a.parts]
    raise KeyError(f"no assignment part is called {name!r}; the parts: {', '.join(names)}")


def grade_case(part_name: str, index: int, student, seed: int = PUBLIC_SEED,
               seconds: float | None = None) -> None:
    """Run check ``index`` of part ``part_name`` on the student's function or class;
    raise an AssertionError whose message is the feedback when it fails. Each call
    of the student's code gets ``seconds`` (default :data:`core.TIME_LIMIT`)."""
    _, part = find_part(part_name)
    chk = part.checks[index]
    if student is None:
        raise Feedback(f"no {part_name} is defined: run the cell that defines it and "
                       "keep its name (did that cell raise an error, e.g. a SyntaxError?)")
    if from_library(student, part):
        raise Feedback(f"this {part_name} is the course library's own (imported or "
                       "inherited), not yours: write it in its cell")
    try:
        with limit_calls(seconds):
            chk.run(part, student, np.random.default_rng([seed, index]))
    except Feedback as e:
        raise Feedback(f"{e}" + (f"\n  Hint: {chk.hint}" if chk.hint else "")) from None


@dataclass
class Result:
    title: str
    points: int
    earned: int
    hidden: bool
    feedback: str


def grade_part(part_name: str, student, seed: int = PUBLIC_SEED,
               hidden: bool = True) -> list[Result]:
    """Every check of a part (the hidden ones too unless ``hidden=False``), as
    :class:`Result` s: what the grader awards, without the grader."""
    _, part = find_part(part_name)
    results = []
    for i, chk in enumerate(part.checks):
        if chk.hidden and not hidden:
            continue
        try:
            grade_case(part_name, i, student, seed)
            results.append(Result(chk.title, chk.points, chk.points, chk.hidden, ""))
        except AssertionError as e:
            results.append(Result(chk.title, chk.points, 0, chk.hidden, str(e)))
    return results


def example(part_name: str) -> tuple[dict, object]:
    """The inputs of a part's example (the public check's) and the result the
    reference gives on them: ``inputs, expected = example("conv2d_naive")``, then
    compare ``conv2d_naive(**inputs)`` with ``expected``. (For parts graded through
    a runner, e.g. the optimisers, ``expected`` is what the check compares: the
    parameters after the steps, flattened.)"""
    _, part = find_part(part_name)
    inputs = copy.deepcopy(part.probe())          # the student's to change
    return inputs, part.run(part.solution(), inputs).value


def check(part_name: str, student) -> int:
    """The public checks of a part, printed with their feedback; returns the points
    earned (out of the public checks' points). Never raises: a notebook runs on."""
    results = grade_part(part_name, student, PUBLIC_SEED, hidden=False)
    _, part = find_part(part_name)
    for r in results:
        mark = "passed" if r.earned == r.points else "FAILED"
        print(f"[{mark}] {r.title} ({r.earned}/{r.points})")
        if r.feedback:
            print("  " + r.feedback.replace("\n", "\n  "))
    earned = sum(r.earned for r in results)
    hidden = sum(c.points for c in part.checks if c.hidden)
    print(f"{part_name}: {earned}/{sum(r.points for r in results)} on the public checks; "
          f"the grader also runs hidden checks worth {hidden} more points.")
    return earned
