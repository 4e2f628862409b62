"""Hypervolume of a two-objective front, in minimisation form."""

from __future__ import annotations

import numpy as np


def hypervolume_2d(points: np.ndarray, reference: tuple[float, float]) -> float:
    """Return the area dominated by ``points`` and bounded by ``reference`` (both minimised).

    Points that do not strictly dominate the reference contribute nothing.

    Args:
        points: array of shape (n, 2).
        reference: the reference point.
    """
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    inside = points[(points[:, 0] < reference[0]) & (points[:, 1] < reference[1])]
    if len(inside) == 0:
        return 0.0
    order = np.lexsort((inside[:, 1], inside[:, 0]))
    area, best_second = 0.0, reference[1]
    for first, second in inside[order]:
        if second < best_second:
            area += (reference[0] - first) * (best_second - second)
            best_second = second
    return float(area)

