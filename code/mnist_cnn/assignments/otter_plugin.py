"""An otter-grader plugin: a time limit on every cell of a graded notebook.

otter runs a submission with no time limit of its own outside Docker, so a cell
that never ends (``while True: pass``) would stop the grading of the whole
class. This plugin puts a cell first that arms an alarm before each cell runs
and disarms it after: a cell past the limit raises ``TimeoutError``, which the
grader reports like any other error, and the notebook's remaining cells and
the checks still run. otter's last cell, which runs the checks, is left alone:
the checks bound each call of student code themselves
(:func:`mnist_cnn.assignments.core.time_limit`).
"""

from __future__ import annotations

import nbformat
from otter.plugins import AbstractOtterPlugin

CELL_SECONDS = 120

_CELL = '''\
# Added by the grader: every cell of this notebook gets at most {seconds} s.
import signal as _signal


def _grader_cell_limit(seconds):
    def expire(signum, frame):
        raise TimeoutError(f"this cell ran past the grader's limit of {{seconds}} s")

    def arm(info):
        if "Checker.check_if_not_already_checked" in (info.raw_cell or ""):
            return          # otter's own cell that runs the checks: each call is limited
        _signal.signal(_signal.SIGALRM, expire)
        _signal.alarm(seconds)

    shell = get_ipython()  # noqa: F821 (defined in every IPython kernel)
    shell.events.register("pre_run_cell", arm)
    shell.events.register("post_run_cell", lambda result: _signal.alarm(0))


_grader_cell_limit({seconds})
'''


class CellTimeLimit(AbstractOtterPlugin):
    """``plugins: [{"mnist_cnn.assignments.otter_plugin.CellTimeLimit": {"seconds": 120}}]``
    in ``otter_config.json``."""

    def before_execution(self, submission):
        if isinstance(submission, str):            # a .py submission: nothing to arm
            return submission
        seconds = int((self.plugin_config or {}).get("seconds", CELL_SECONDS))
        submission.cells.insert(0, nbformat.v4.new_code_cell(_CELL.format(seconds=seconds)))
        return submission
