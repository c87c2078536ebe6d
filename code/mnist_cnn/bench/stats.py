"""The one summary every benchmark prints: how many, median, 95th percentile, max.

The 95th percentile is NumPy's default (``np.percentile(v, 95)``: linear
interpolation between the two nearest ranks), so "p95" means the same number in
every benchmark of the project. With fewer than about 20 values it lies between
the two largest and says little more than the maximum; the count is printed too.
"""

from __future__ import annotations

import numpy as np


def summary(values, digits: int | None = None) -> dict:
    """``{"n", "median", "p95", "max"}`` of ``values``; the statistics are None when
    there are no values. ``digits`` rounds them (for printing and JSON records)."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return {"n": 0, "median": None, "p95": None, "max": None}
    stats = {"median": float(np.median(v)), "p95": float(np.percentile(v, 95)),
             "max": float(v.max())}
    if digits is not None:
        stats = {k: round(x, digits) for k, x in stats.items()}
    return {"n": int(v.size), **stats}
