"""The machinery of the graded assignments: parts, checks, feedback, planted mistakes.

An assignment is a list of :class:`Part`; each part is one function (or one method
of a class) of the course library that the student writes again from its stub. A
part is graded by :class:`Check` s, each worth points: the public ones are the
checks a student runs while working (:func:`check`); the hidden ones run only in
the grader, on inputs drawn from the teacher's seed (:func:`grade_case`).

What a failed check says: the input it used, where the output differs and by
how much, and, when the student's output is what one of the part's known
:class:`Mistake` s computes on the same input, the name of that mistake and
how to fix it. Each mistake is a small edit of the library's own source (the
reference solution), so the grader recognises it by running the edited
reference on the student's input, and the tests plant every one of them.

"Equal" is the course's rule (:mod:`mnist_cnn.numerics`): the inputs are float64
and outputs may differ by 1000 units of rounding relative to the largest value,
which allows any order of summation and nothing else.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import inspect
import io
import signal
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnist_cnn.numerics import GRADIENT_RTOL, max_rel_error, rel_error, tolerance

TIME_LIMIT = 60          # seconds for one call of student code (the loops need < 1 s)
PRINT_LIMIT = 10_000     # characters of a student's printing kept per check


class Feedback(AssertionError):
    """A failed check: the message is what the student reads."""


class TimeLimit(Exception):
    """A call ran past its time limit."""


@dataclass
class Mistake:
    """A known wrong solution: ``edits`` turn the reference source into it.

    ``name`` is what the feedback calls it (and what the tests look for);
    ``fix`` says what to do instead.
    """

    name: str
    fix: str
    edits: list[tuple[str, str]]


@dataclass
class Check:
    """One graded check of a part.

    ``run(student, reference, rng)`` raises :class:`Feedback` when the student's
    code is wrong; ``hint`` is added to any failure (what this check isolates).
    """

    title: str
    points: int
    hidden: bool
    run: Callable
    hint: str = ""
    cases: Callable | None = None     # rng -> [(label, inputs, ...)], the inputs it uses


def _package_dirs(*names: str) -> tuple[str, ...]:
    """Where these packages are installed (found without importing them)."""
    import importlib.util
    dirs = []
    for name in names:
        with contextlib.suppress(ImportError, ValueError):
            spec = importlib.util.find_spec(name)
            if spec is not None and spec.submodule_search_locations:
                dirs += [str(d) for d in spec.submodule_search_locations]
    return tuple(dirs)


# Deep-learning (and signal-processing) libraries a from-scratch solution does not call.
FRAMEWORKS = _package_dirs("tensorflow", "keras", "torch", "jax", "scipy")


@dataclass
class Forbidden:
    """What student code may not call: code objects (by name), and any function in
    the files or folders ``files`` except ``allowed``."""

    codes: dict
    files: tuple
    allowed: set

    def name(self, code) -> str | None:
        if code in self.codes:
            return self.codes[code]
        if code not in self.allowed and self.files and code.co_filename.startswith(self.files):
            return f"{code.co_name} ({Path(code.co_filename).name})"
        return None


@dataclass
class Part:
    """One function (or method) to write.

    - ``reference``: the library's function, or ``(class, "method")``
    - ``given``: library helpers the student may call (imported in the notebook)
    - ``solution_helpers``: library helpers the reference solution uses that the
      student writes themselves (their source is part of the answer key)
    - ``intro``: what to write, in Markdown (the docstring follows it)
    """

    reference: object
    intro: str
    checks: list[Check]
    mistakes: list[Mistake]
    outputs: tuple[str, ...] = ("out",)
    runner: Callable | None = None
    given: tuple = ()
    solution_helpers: tuple = ()
    earlier: tuple = ()       # library functions of earlier parts the reference calls
    forbid: tuple = ()        # library modules or functions the student may not call
    doc: str | None = None    # the stub's docstring, where the library's gives the answer
    class_doc: str | None = None    # the same for a method's class
    name: str = field(init=False)

    def __post_init__(self):
        self.name = self.reference[0].__name__ if self.is_method else self.reference.__name__

    @property
    def is_method(self) -> bool:
        return isinstance(self.reference, tuple)

    @property
    def function(self):
        """The library's function (for a method part, the method's function)."""
        if self.is_method:
            cls, method = self.reference
            return cls.__dict__[method]
        return self.reference

    @property
    def points(self) -> int:
        return sum(c.points for c in self.checks)

    def run(self, obj, inputs: dict, student: bool = False) -> Outcome:
        """Run a function (or class) written for this part on ``inputs``, under the
        limits: ``runner(obj, **inputs)``, by default ``obj(**inputs)``. For a
        ``student``'s code, a call from it into the library's solution (or into what
        ``forbid`` names, or a deep-learning framework) is an error."""
        runner = self.runner or (lambda fn, **kw: fn(**kw))
        # A copy each time: student code may write into its inputs (an optimiser must).
        status, value = call(runner, obj, forbidden=self.forbidden() if student else None,
                             **copy.deepcopy(inputs))
        return Outcome(status, value)

    def forbidden(self) -> Forbidden:
        codes = {f.__code__: f.__qualname__ for f in (self.function, *self.solution_helpers)}
        files: list[str] = list(FRAMEWORKS)
        for item in self.forbid:
            if inspect.ismodule(item):
                files.append(str(Path(item.__file__).parent if item.__file__.endswith(
                    "__init__.py") else item.__file__))
            else:
                codes[item.__code__] = item.__qualname__
        allowed = {f.__code__ for f in (*self.given, *self.earlier)}
        return Forbidden(codes, tuple(files), allowed)

    def probe(self) -> dict | None:
        """The inputs of the part's first public check (what the notebook's example
        uses): a second input on which a diagnosed mistake must also agree. Drawn
        once (a gradient check's cases compute numerical gradients); callers only
        read it (:meth:`run` copies its inputs)."""
        if "_probe" not in self.__dict__:
            self._probe = next((c.cases(np.random.default_rng(0))[0][1] for c in self.checks
                                if not c.hidden and c.cases is not None), None)
        return self._probe

    def solution(self):
        """What a correct student cell defines: the library's function or class."""
        return self.reference[0] if self.is_method else self.reference

    def setup_source(self) -> str:
        """The imports a notebook cell for this part needs: NumPy, the library's
        modules, the given helpers."""
        lines = ["import math", "", "import numpy as np",
                 "from numpy.lib.stride_tricks import sliding_window_view", "",
                 "from mnist_cnn.scratch import layers, optim"]
        for helper in (*self.given, *self.earlier):
            lines.append(f"from {helper.__module__} import {helper.__name__}")
        return "\n".join(lines) + "\n"

    def from_source(self, source: str):
        """What a notebook cell ``source`` defines under this part's name, run after
        :meth:`setup_source` in a fresh namespace, as in a student's notebook."""
        namespace = {"__name__": "__student__"}
        exec(compile(self.setup_source() + "\n" + source, f"<student {self.name}>", "exec"),
             namespace)
        return namespace.get(self.name)

    def planted(self, mistake: Mistake) -> str:
        """The answer key's cell with ``mistake`` planted."""
        src = solution_source(self)
        for old, new in mistake.edits:
            if old not in src:
                raise ValueError(f"{self.name}: mistake {mistake.name!r}: {old!r} is not in "
                                 "the reference source")
            src = src.replace(old, new)
        return src

    def mutant(self, mistake: Mistake):
        """The reference with ``mistake`` planted, defined as a notebook would."""
        return self.from_source(self.planted(mistake))


@dataclass
class Assignment:
    name: str
    title: str
    intro: str
    parts: list[Part]
    chapter: str = ""

    @property
    def points(self) -> int:
        return sum(p.points for p in self.parts)

    def part(self, name: str) -> Part:
        for p in self.parts:
            if p.name == name:
                return p
        raise KeyError(f"assignment {self.name!r} has no part {name!r}; its parts: "
                       f"{', '.join(p.name for p in self.parts)}")


# ------------------------------------------------------------------ running student code

@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`TimeLimit` in the block after ``seconds`` (main thread only;
    elsewhere no limit). A timer already running (the grader's limit on the whole
    cell) is kept: the block gets at most what is left of it, and it runs on after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    limit = [f"did not finish within {seconds:g} s"]

    def expire(signum, frame):
        raise TimeLimit(limit[0])

    t0 = time.monotonic()
    old = signal.signal(signal.SIGALRM, expire)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    if 0 < outer < seconds:
        signal.setitimer(signal.ITIMER_REAL, outer)
        limit[0] = (f"did not finish within the {outer:.3g} s left of this cell's time "
                    "limit")
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if outer > 0:            # the cell's own alarm goes on (at once if it is due)
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - t0), 1e-3))


class _Capped(io.StringIO):
    """Keeps the first PRINT_LIMIT characters written to it, drops the rest."""

    def write(self, s):
        room = PRINT_LIMIT - self.tell()
        if room > 0:
            super().write(s[:room])
        return len(s)


_seconds = [TIME_LIMIT]      # the limit in force (grade_case may set another)


@contextlib.contextmanager
def limit_calls(seconds: float | None):
    """Calls of student code in the block get ``seconds`` each (None: the default)."""
    old = _seconds[0]
    _seconds[0] = TIME_LIMIT if seconds is None else seconds
    try:
        yield
    finally:
        _seconds[0] = old


def call(fn, *args, forbidden: Forbidden | None = None, **kwargs):
    """Call student code under the time limit, its printing captured and capped.

    Returns ("ok", value), ("error", "ExceptionType: message") or, when student code
    called something ``forbidden`` (the library's solution, a framework),
    ("library", its name). Only calls made *from* student code count: the library
    code a check runs around the student's (a network, an optimiser) is free."""
    sink = _Capped()
    reached = []

    def profile(frame, event, arg):
        if event != "call" or reached:
            return
        caller = frame.f_back
        if caller is None or caller.f_code.co_filename.startswith(_NOT_STUDENT):
            return
        name = forbidden.name(frame.f_code)
        if name is not None:
            reached.append(name)

    old_profile = sys.getprofile()
    try:
        with time_limit(_seconds[0]), contextlib.redirect_stdout(sink), \
                np.errstate(all="ignore"):
            if forbidden:
                sys.setprofile(profile)
            try:
                outcome = "ok", fn(*args, **kwargs)
            finally:
                sys.setprofile(old_profile)
    except TimeLimit as e:
        outcome = "error", (f"TimeLimit: {e} (a loop that never ends? loops over more "
                            "than the output positions?)")
    except NotImplementedError as e:
        outcome = "error", (f"NotImplementedError: {e} - not written yet (the stub still "
                            "raises)")
    except Exception as e:            # the student's bug, reported, never fatal
        outcome = "error", f"{type(e).__name__}: {e}{_student_line(e)}"
    return ("library", reached[0]) if reached else outcome


def _student_line(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith(_LIBRARY_ROOT)]
    if not frames or not frames[-1].line:
        return ""
    last = frames[-1]
    return f"\n    raised at line {last.lineno} of {last.name}: {last.line.strip()}"


_LIBRARY_ROOT = __file__.rsplit("/assignments/", 1)[0]


def from_library(student, part: Part) -> bool:
    """True when the student's object is the library's own solution (imported or
    inherited, not written)."""
    if part.is_method:
        fn = vars(student).get(part.reference[1]) if isinstance(student, type) else None
    else:
        fn = student
    return fn is None or getattr(fn, "__code__", None) is part.function.__code__


# ------------------------------------------------------------------ comparing outputs

def _as_tuple(value):
    return value if isinstance(value, tuple) else (value,)


def compare(got, want, names: tuple[str, ...]) -> str | None:
    """None when ``got`` equals ``want`` (the course's rule; non-finite values must
    sit at the same places and be the same), else what differs."""
    got, want = _as_tuple(got), _as_tuple(want)
    if len(got) != len(want):
        return f"returned {len(got)} value(s), expected {len(want)} ({', '.join(names)})"
    for name, g, w in zip(names, got, want, strict=True):
        if w is None:
            continue
        w = np.asarray(w, dtype=np.float64)
        dtype = getattr(g, "dtype", None)
        try:
            g = np.asarray(g, dtype=np.float64)
        except (TypeError, ValueError):
            return f"{name} is not an array of numbers (got {type(g).__name__})"
        if g.shape != w.shape:
            return f"{name} has shape {g.shape}, expected {w.shape}"
        finite_g, finite_w = np.isfinite(g), np.isfinite(w)
        if not np.array_equal(finite_g, finite_w) or not np.array_equal(
                g[~finite_g], w[~finite_w], equal_nan=True):
            bad = tuple(int(i) for i in np.argwhere((finite_g != finite_w) | ~finite_g)[0])
            return (f"{name} has {g[bad]} at index {bad}, expected {w[bad]:.6g}")
        err = max_rel_error(np.where(finite_g, g, 0), np.where(finite_w, w, 0))
        if err > tolerance(w):
            idx = tuple(int(i) for i in np.unravel_index(
                np.argmax(np.abs(np.where(finite_g, g - w, 0))), w.shape))
            hint = ""
            if dtype is not None and np.dtype(dtype) != np.float64 and err < 1e-3:
                hint = (f" - your {name} is {np.dtype(dtype)}: keep the inputs' dtype "
                        "(float64 here), whose rounding is far finer")
            return (f"{name} differs from the reference: at index {idx} you have "
                    f"{g[idx]:.10g}, expected {w[idx]:.10g} (relative error {err:.2g}){hint}")
    return None


@dataclass
class Outcome:
    status: str       # "ok" or "error"
    value: object


def _same(a: Outcome, b: Outcome, part: Part) -> bool:
    if a.status != b.status:
        return False
    if a.status == "ok":
        return compare(a.value, b.value, part.outputs) is None
    return a.value.split("\n")[0] == b.value.split("\n")[0]


def diagnose(part: Part, student, inputs: dict, got: Outcome) -> str:
    """The mistake whose planted version gives the student's result, on this input
    and on the notebook's example (so that two mistakes that fail alike on one
    input are told apart), if one does."""
    probe = part.probe()
    on_probe = None
    for mistake in part.mistakes:
        try:
            mutant = part.mutant(mistake)
        except Exception:         # a mistake that does not apply to this library version
            continue
        if not _same(got, part.run(mutant, inputs), part):
            continue
        if probe is not None:
            on_probe = on_probe or part.run(student, probe, student=True)
            if not _same(on_probe, part.run(mutant, probe), part):
                continue
        return (f"\n  Your result is exactly what the mistake '{mistake.name}' gives: "
                f"{mistake.fix}")
    return ""


def _library_call(part: Part, name: str, label: str) -> Feedback:
    return Feedback(f"On {label}: your code calls {name}, from the course library or a "
                    "framework: write it yourself with NumPy (this check scores 0 "
                    "otherwise)")


def expect_same(part: Part, student, inputs: dict, label: str) -> None:
    """Compare the student's result with the reference on ``inputs``; raise
    :class:`Feedback` saying what differs and naming a known mistake."""
    want = part.run(part.solution(), inputs)
    if want.status != "ok":                      # a bug in the catalogue, not the student's
        raise RuntimeError(f"reference failed on {label}: {want.value}")
    got = part.run(student, inputs, student=True)
    if got.status == "library":
        raise _library_call(part, got.value, label)
    if got.status == "error":
        problem = f"raised {got.value}"
    else:
        problem = compare(got.value, want.value, part.outputs)
        if problem is None:
            return
    raise Feedback(f"On {label}: {problem}{diagnose(part, student, inputs, got)}")


def expect_gradient(part: Part, student, inputs: dict, numerical: dict, label: str) -> None:
    """A gradient check the student can read: the student's gradients against
    centred differences of the reference forward pass (``numerical``)."""
    got = part.run(student, inputs, student=True)
    if got.status == "library":
        raise _library_call(part, got.value, label)
    if got.status == "error":
        raise Feedback(f"On {label}: raised {got.value}"
                       f"{diagnose(part, student, inputs, got)}")
    values = dict(zip(numerical, _as_tuple(got.value), strict=False))
    for name, num in numerical.items():
        g = values.get(name)
        shape = np.shape(g) if g is not None else None
        if shape != num.shape:
            raise Feedback(f"On {label}: {name} has shape {shape}, expected {num.shape}"
                           f"{diagnose(part, student, inputs, got)}")
        err = rel_error(np.asarray(g, dtype=np.float64), num)
        if not err <= GRADIENT_RTOL:
            raise Feedback(
                f"On {label}: {name} fails the numerical gradient check: relative error "
                f"{err:.2g} (a correct gradient gives < {GRADIENT_RTOL:g})"
                f"{diagnose(part, student, inputs, got)}")


_NOT_STUDENT = tuple(p for p in {sys.prefix, sys.base_prefix, sys.exec_prefix,
                                  _LIBRARY_ROOT} if p) + ("<frozen",)


def count_lines(fn, *args, **kwargs) -> int:
    """How many lines of the student's own code (anything outside Python, its
    packages and the course library, in whatever cell it was written) run during
    ``fn(*args, **kwargs)``: a vectorised function runs a few dozen, one that loops
    over output positions (itself or through another function of the student's)
    thousands. Counting lines, not seconds, gives the same answer on every machine."""
    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        if frame.f_code.co_filename.startswith(_NOT_STUDENT):
            return None
        if event == "line":
            count += 1
        return tracer

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        call(fn, *args, **kwargs)
    finally:
        sys.settrace(old)
    return count


def stub_source(part: Part) -> str:
    """The student's starting cell: the reference's signature, its docstring (or the
    part's own ``doc``, where the library's docstring would give the answer away)
    and a body that raises NotImplementedError. A method's stub is its class, with
    the class's docstring."""
    fn = part.function
    src = textwrap.dedent(inspect.getsource(fn))
    node = ast.parse(src).body[0]
    lines = ast.get_source_segment(src, node).splitlines()
    has_doc = ast.get_docstring(node, clean=False) is not None
    signature = lines[: node.body[0].lineno - 1]
    doc = lines[node.body[0].lineno - 1: node.body[0].end_lineno] if has_doc else []
    if part.doc is not None:
        text = textwrap.indent(inspect.cleandoc(part.doc), " " * 4)
        doc = ['    """' + text.lstrip() + "\n    " + '"""']
    body = ["    # YOUR CODE HERE", f'    raise NotImplementedError("{part.name}: write me")']
    src = "\n".join([*signature, *doc, *body]) + "\n"
    if part.is_method:
        cls, _ = part.reference
        text = part.class_doc if part.class_doc is not None else (cls.__doc__ or "")
        cls_doc = textwrap.indent(inspect.cleandoc(text), " " * 4).rstrip()
        src = (f"class {cls.__name__}({_qualified(cls)}):\n"
               f'    """{cls_doc.lstrip()}\n\n'
               f"    (Your {part.reference[1]}; __init__ and the rest are the library's.)\n"
               '    """\n\n' + textwrap.indent(src, " " * 4))
    return src


def solution_source(part: Part) -> str:
    """The answer key's cell: the library's own source of the part (and of the
    helpers it uses that the student writes too)."""
    chunks = [textwrap.dedent(inspect.getsource(h)) for h in part.solution_helpers]
    src = textwrap.dedent(inspect.getsource(part.function))
    if part.is_method:
        cls, _ = part.reference
        src = f"class {cls.__name__}({_qualified(cls)}):\n" + textwrap.indent(src, " " * 4)
    return "\n\n".join([*chunks, src])


def _qualified(cls) -> str:
    module = cls.__module__.rsplit(".", 1)[-1]
    return f"{module}.{cls.__name__}"
