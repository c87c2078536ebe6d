"""How benchmarks.browser reads an answer log (no browser needed): what counts as the
final answer shown, as a stale answer after the last stroke, and as one while drawing."""

from __future__ import annotations

from benchmarks.browser import analyse_answer_log


def _log(*rows):
    out = []
    for t, why, *state in rows:
        rec = {"t": t, "why": why}
        if state:
            value, marked, strokes = state
            rec.update(value=value, marked=marked, strokes=strokes, opacity=1)
        out.append(rec)
    return out


def test_marked_answers_are_not_counted_and_latency_runs_from_the_last_up():
    log = _log((0, "pointerdown"), (10, "tick", None, True, None), (100, "pointerup"),
               (150, "pointerdown"), (200, "change", "7", True, 1), (300, "pointerup"),
               (400, "change", "7", True, 1), (550, "change", "3", True, 2),
               (560, "change", "3", False, 2), (600, "tick", "3", False, 2))
    res = analyse_answer_log(log, "3", 2)
    assert res == {"latency_s": 0.26, "stale_after_last_up": 0, "unmarked_while_drawing": 0,
                   "samples_after_last_up": 4}


def test_unmarked_answers_for_unfinished_drawings_are_counted_once_per_showing():
    log = _log((0, "pointerdown"), (100, "pointerup"), (150, "change", "1", False, 1),
               (200, "pointerdown"), (210, "tick", "1", False, 1), (260, "tick", "1", False, 1),
               (300, "pointerup"), (350, "tick", "1", False, 1), (400, "tick", "1", False, 1),
               (500, "change", "4", False, 2))
    res = analyse_answer_log(log, "4", 2)
    assert res["unmarked_while_drawing"] == 1  # "1" shown as current while drawing
    assert res["stale_after_last_up"] == 1     # and still after the last stroke
    assert res["latency_s"] == 0.2


def test_the_same_digit_for_an_unfinished_drawing_is_not_the_final_answer():
    # The app says which drawing it read: a "3" for 1 of 2 strokes is not the answer.
    log = _log((0, "pointerdown"), (100, "pointerup"), (120, "pointerdown"),
               (200, "pointerup"), (250, "change", "3", False, 1),
               (400, "change", "3", False, 2))
    res = analyse_answer_log(log, "3", 2)
    assert res["stale_after_last_up"] == 1 and res["latency_s"] == 0.2
    # Without the app's stroke count (an app that does not say), only the value counts.
    assert analyse_answer_log(log, "3")["latency_s"] == 0.05
