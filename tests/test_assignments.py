"""The graded assignments: the answer keys score full marks, every planted mistake
loses its part's points with a message naming it, untouched stubs score 0, the
notebooks are what the library generates, and otter-grader grades real notebooks
(including broken, looping and noisy ones) without falling over."""

from __future__ import annotations

import copy
import csv
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from mnist_cnn.assignments import ASSIGNMENTS, check, grade_case, grade_part
from mnist_cnn.assignments.core import solution_source, stub_source

from tools import make_assignments

ROOT = Path(__file__).resolve().parents[1]
PARTS = [p for a in ASSIGNMENTS.values() for p in a.parts]
MISTAKES = [(p, m) for p in PARTS for m in p.mistakes]


def _score(results) -> int:
    return sum(r.earned for r in results)


@pytest.mark.parametrize("seed", [1, 2026])
@pytest.mark.parametrize("part", PARTS, ids=lambda p: p.name)
def test_reference_solution_scores_full_marks(part, seed):
    student = part.from_source(solution_source(part))      # as a notebook defines it
    results = grade_part(part.name, student, seed=seed)
    assert [r.feedback for r in results if r.earned < r.points] == []
    assert _score(results) == part.points > 0


@pytest.mark.parametrize("part", PARTS, ids=lambda p: p.name)
def test_every_part_plants_at_least_three_mistakes(part):
    assert len(part.mistakes) >= 3
    assert any(c.hidden for c in part.checks) and any(not c.hidden for c in part.checks)


@pytest.mark.parametrize("part,mistake", MISTAKES,
                         ids=[f"{p.name}-{m.name}" for p, m in MISTAKES])
def test_planted_mistake_loses_points_and_is_named(part, mistake):
    student = part.from_source(part.planted(mistake))
    results = grade_part(part.name, student, seed=7)
    assert _score(results) < part.points
    feedback = "\n".join(r.feedback for r in results)
    assert f"the mistake '{mistake.name}'" in feedback
    assert mistake.fix in feedback


@pytest.mark.parametrize("part", PARTS, ids=lambda p: p.name)
def test_untouched_stub_scores_zero_and_says_why(part):
    student = part.from_source(stub_source(part))
    results = grade_part(part.name, student, seed=3)
    assert _score(results) == 0
    assert all("not written yet" in r.feedback for r in results)


@pytest.mark.parametrize("part", PARTS, ids=lambda p: p.name)
def test_the_librarys_own_solution_scores_zero(part):
    results = grade_part(part.name, part.solution(), seed=3)
    assert _score(results) == 0
    assert "the course library's own" in results[0].feedback


def test_inherited_method_scores_zero():
    part = ASSIGNMENTS["optimisers"].part("SGD")
    student = part.from_source("class SGD(optim.SGD):\n    pass\n")
    assert _score(grade_part("SGD", student)) == 0


def test_loops_fail_the_vectorised_check_only():
    part = ASSIGNMENTS["convolution_forward"].part("conv2d")
    loops = solution_source(ASSIGNMENTS["convolution_forward"].part("conv2d_naive"))
    student = part.from_source(loops.replace("def conv2d_naive(", "def conv2d("))
    results = {r.title: r for r in grade_part("conv2d", student, seed=5)}
    vec = results["vectorised: no loop over output positions"]
    assert vec.earned == 0 and "lines of your code ran" in vec.feedback
    assert all(r.earned == r.points for t, r in results.items() if t != vec.title)


def test_hidden_inputs_come_from_the_seed():
    part = ASSIGNMENTS["convolution_forward"].part("conv2d_naive")
    hidden = next(c for c in part.checks if c.hidden)
    seen = []
    key = part.from_source(solution_source(part))

    def conv2d_naive(x, w, b, stride=1, padding="valid"):     # a student's, spied on
        seen.append(x.copy())
        return key(x, w, b, stride, padding)

    firsts = []
    for seed in (1, 2, 1):
        grade_case(part.name, part.checks.index(hidden), conv2d_naive, seed)
        firsts.append(seen[-1])
    assert not np.array_equal(firsts[0], firsts[1]) and np.array_equal(firsts[0], firsts[2])


def test_public_check_prints_feedback_and_never_raises(capsys):
    part = ASSIGNMENTS["dense_softmax"].part("softmax")
    wrong = part.from_source(part.planted(part.mistakes[2]))
    earned = check("softmax", wrong)
    out = capsys.readouterr().out
    assert earned == 0 and "[FAILED] the example" in out and part.mistakes[2].name in out
    assert "hidden checks worth 2 more points" in out
    assert check("softmax", part.from_source(solution_source(part))) == 1


def test_calling_the_librarys_solution_scores_zero():
    adam = ASSIGNMENTS["optimisers"].part("Adam")
    wrapper = adam.from_source("class Adam(optim.Adam):\n    def step(self, p, g):\n"
                               "        super().step(p, g)\n")
    results = grade_part("Adam", wrapper, seed=1)
    assert _score(results) == 0
    assert all("calls Adam.step" in r.feedback for r in results)
    dense = ASSIGNMENTS["dense_softmax"].part("dense_backward")
    wrapper = dense.from_source("from mnist_cnn.scratch import functional as F2\n"
                                "def dense_backward(dout, cache, need_dx=True):\n"
                                "    return F2.dense_backward(dout, cache, need_dx)\n")
    assert _score(grade_part("dense_backward", wrapper)) == 0


@pytest.mark.parametrize("name,src", [
    ("conv2d_naive", "def conv2d_naive(x, w, b, stride=1, padding='valid'):\n"
                     "    return F2.conv2d(x, w, b, stride, padding)\n"),
    ("conv2d", "def conv2d(x, w, b, stride=1, padding='valid'):\n"
               "    return F2.conv2d_naive(x, w, b, stride, padding)\n"),
    ("max_pool2d_backward_naive", "def max_pool2d_backward_naive(dout, cache):\n"
     "    _, c = F2.max_pool2d(cache['x'], cache['pool'], cache['stride'])\n"
     "    return F2.max_pool2d_backward(dout, c)\n"),
    ("softmax", "def softmax(z):\n    return np.exp(F2.log_softmax(z))\n"),
    ("softmax", "import scipy.special\ndef softmax(z):\n"
                "    return scipy.special.softmax(z, axis=-1)\n"),
])
def test_calling_another_library_or_framework_function_scores_zero(name, src):
    if "scipy" in src:
        pytest.importorskip("scipy")
    part = dict((p.name, p) for p in PARTS)[name]
    student = part.from_source("from mnist_cnn.scratch import functional as F2\n" + src)
    results = grade_part(name, student, seed=1)
    assert _score(results) == 0, [r.feedback for r in results]
    assert "from the course library or a framework" in results[0].feedback


def test_a_forward_pass_that_forgets_its_cache_is_told_so():
    part = ASSIGNMENTS["pooling"].part("max_pool2d_naive")
    src = solution_source(part).replace("    return out, cache", "    return out")
    feedback = grade_part("max_pool2d_naive", part.from_source(src))[0].feedback
    assert "return the pair (out, cache)" in feedback


def test_feedback_files_never_overwrite_each_other():
    from mnist_cnn.assignments.grader import feedback_names
    assert feedback_names(["a/pooling.ipynb", "b/x.ipynb"]) == ["pooling.txt", "x.txt"]
    names = feedback_names(["alice/pooling.ipynb", "bob/pooling.ipynb", "bob/pooling.ipynb"])
    assert names == ["alice__pooling.txt", "bob__pooling.txt", "bob__pooling_2.txt"]


def test_vectorised_check_counts_loops_in_the_students_other_functions():
    part = ASSIGNMENTS["convolution_forward"].part("conv2d")
    naive = solution_source(ASSIGNMENTS["convolution_forward"].part("conv2d_naive"))
    student = part.from_source(naive + "\n\ndef conv2d(x, w, b, stride=1, padding='valid'):\n"
                               "    return conv2d_naive(x, w, b, stride, padding)\n")
    results = {r.title: r for r in grade_part("conv2d", student, seed=5)}
    assert results["vectorised: no loop over output positions"].earned == 0
    assert "lines of your code ran" in results["vectorised: no loop over output positions"].feedback


@pytest.mark.parametrize("shift", ["z.min(axis=-1, keepdims=True)", "z[..., :1]",
                                   "z.mean(axis=-1, keepdims=True)"])
def test_a_softmax_shifted_by_anything_but_the_maximum_fails_large_logits(shift):
    part = ASSIGNMENTS["dense_softmax"].part("softmax")
    student = part.from_source(f"def softmax(z):\n    e = np.exp(z - {shift})\n"
                               "    return e / e.sum(axis=-1, keepdims=True)\n")
    results = {r.title: r for r in grade_part("softmax", student, seed=4)}
    assert results["large logits"].earned == 0
    assert "the mistake" not in results["large logits"].feedback   # none of the known ones


def test_a_mistake_is_named_only_when_it_explains_the_example_too():
    # Adam with eps inside the square root: wrong, but none of the planted mistakes.
    part = ASSIGNMENTS["optimisers"].part("Adam")
    src = solution_source(part).replace("(np.sqrt(v) + eps_t)", "np.sqrt(v + eps_t)")
    results = grade_part("Adam", part.from_source(src), seed=2)
    assert _score(results) < part.points
    assert not any("the mistake" in r.feedback for r in results)


def test_float32_results_are_told_about_their_dtype():
    part = ASSIGNMENTS["dense_softmax"].part("softmax")
    student = part.from_source("def softmax(z):\n    z = z.astype(np.float32)\n"
                               "    e = np.exp(z - z.max(axis=-1, keepdims=True))\n"
                               "    return e / e.sum(axis=-1, keepdims=True)\n")
    assert "is float32" in grade_part("softmax", student)[0].feedback


def test_a_check_inside_a_cell_keeps_the_cells_time_limit():
    import signal
    signal.setitimer(signal.ITIMER_REAL, 30)       # as the grader's cell limit does
    try:
        part = ASSIGNMENTS["dense_softmax"].part("softmax")
        check("softmax", part.from_source(solution_source(part)))
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 0 < left <= 30
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def test_example_gives_the_public_inputs_and_the_result_to_match():
    from mnist_cnn.assignments import example
    from mnist_cnn.scratch import functional as F
    inputs, expected = example("conv2d_naive")
    np.testing.assert_array_equal(expected, F.conv2d_naive(**inputs)[0])


def test_a_check_reports_the_students_line():
    part = ASSIGNMENTS["dense_softmax"].part("dense_backward")
    student = part.from_source(
        "def dense_backward(dout, cache, need_dx=True):\n"
        "    x, w = cache\n"
        "    return dout @ w.T, x.T @ dout, dout.sum(axis=0) + undefined_name\n")
    feedback = grade_part("dense_backward", student)[0].feedback
    assert "NameError" in feedback and "undefined_name" in feedback


# ----------------------------------------------------------------------- the notebooks


@pytest.mark.parametrize("name", list(ASSIGNMENTS))
def test_student_notebook_is_what_the_library_generates(name):
    path = ROOT / "assignments" / f"{name}.ipynb"
    assert path.is_file(), "run `make assignments`"
    assert path.read_text() == make_assignments.render(
        make_assignments.notebook(ASSIGNMENTS[name])), "stale: run `make assignments`"


@pytest.mark.parametrize("name", list(ASSIGNMENTS))
def test_student_notebook_has_stubs_and_no_solution(name):
    nb = nbformat.read(ROOT / "assignments" / f"{name}.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for part in ASSIGNMENTS[name].parts:
        assert stub_source(part) in code
        body = solution_source(part).split('"""')[-1]         # the code after the docstring
        assert body.strip() and body not in code
        assert f'check("{part.name}", {part.name})' in code


# ----------------------------------------------------------------------- otter end to end


@pytest.fixture(scope="module")
def pooling(tmp_path_factory):
    """An autograder for the pooling assignment with short limits (3 s per cell, 1 s
    per call), its answer key, the untouched student notebook and bad submissions."""
    d = tmp_path_factory.mktemp("grading")
    a = ASSIGNMENTS["pooling"]
    zip_path = make_assignments.autograder(a, 11, d / "pooling.zip",
                                           cell_seconds=3, call_seconds=1)
    key = make_assignments.notebook(a, key=True)
    (d / "stub.ipynb").write_text((ROOT / "assignments" / "pooling.ipynb").read_text())
    bad = copy.deepcopy(key)
    bad.cells.insert(5, nbformat.v4.new_code_cell("raise RuntimeError('a student error')"))
    bad.cells.append(nbformat.v4.new_code_cell("while True:\n    pass"))
    bad.cells.append(nbformat.v4.new_code_cell("print('x' * 20_000_000)"))
    for cell in bad.cells:          # a backward pass that loops forever inside a check
        if cell.source.startswith("def max_pool2d_backward_naive"):
            cell.source = cell.source.replace('    x, p, s = cache["x"]',
                                              '    while True:\n        pass\n    x, p, s')
    bad.cells.append(nbformat.v4.new_code_cell(        # a check must not disarm the limit
        'check("max_pool2d_naive", max_pool2d_naive)\nwhile True:\n    pass'))
    nbformat.write(bad, d / "bad.ipynb")
    bare = copy.deepcopy(key)                 # its metadata lost (pasted elsewhere)
    bare.metadata = {"kernelspec": key.metadata["kernelspec"]}
    bare.cells.append(nbformat.v4.new_code_cell(
        "import mnist_cnn.assignments as A\nA.grade_case = lambda *a, **k: None"))
    nbformat.write(bare, d / "bare.ipynb")
    (d / "broken.ipynb").write_text('{"cells": [')
    other = make_assignments.notebook(ASSIGNMENTS["batchnorm"])
    nbformat.write(other, d / "other.ipynb")
    return d, zip_path


@pytest.mark.slow
def test_otter_grades_key_stub_and_bad_notebooks(pooling):
    d, zip_path = pooling
    # No separate answer key: "bare" is one (without its metadata), and the Colab test
    # grades another assignment's key through the same command.
    names = ["stub", "bad", "broken", "other", "bare", "missing"]
    out = subprocess.run(
        [sys.executable, "-m", "mnist_cnn", "grade", *[str(d / f"{n}.ipynb") for n in names],
         "--autograder", str(zip_path), "--csv", str(d / "grades.csv"), "--timeout", "600",
         "--jobs", "2", "--feedback", str(d / "feedback")],
        capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {Path(r["notebook"]).stem: r for r in csv.DictReader(open(d / "grades.csv"))}
    assert float(rows["stub"]["total"]) == 0 and rows["stub"]["error"] == ""
    # Raised, looped forever at top level and printed 20 MB: graded all the same; its
    # backward pass loops inside the checks and loses exactly that part.
    assert float(rows["bad"]["max_pool2d_naive"]) == 3
    assert float(rows["bad"]["max_pool2d_backward_naive"]) == 0
    assert "did not finish within 1 s" in out.stdout
    assert "not a readable notebook" in rows["broken"]["error"]
    assert float(rows["broken"]["total"]) == 0
    assert "for 'batchnorm'" in rows["other"]["error"]
    assert rows["missing"]["error"] == "no such file"
    # No otter metadata: graded as the autograder's assignment; the patched grader is
    # reported for the teacher to read.
    assert rows["bare"]["error"] == "" and "touches the grader" in rows["bare"]["warning"]
    assert float(rows["bare"]["total"]) == 7 == float(rows["bare"]["out_of"])
    assert "grade_case" in rows["bare"]["warning"]
    assert "0 points" in (d / "feedback" / "stub.txt").read_text() or \
        "0/7" in (d / "feedback" / "stub.txt").read_text()
    assert "not written yet" in out.stdout


def test_grade_without_an_autograder_says_what_to_do(tmp_path):
    from mnist_cnn.assignments.grader import grade_notebook
    nb = tmp_path / "n.ipynb"
    nbformat.write(make_assignments.notebook(ASSIGNMENTS["pooling"]), nb)
    report = grade_notebook(nb, autograders=tmp_path / "none")
    assert "make assignments" in report.error and report.total == 0
