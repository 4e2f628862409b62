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


def hypervolume_improvements_2d(
    points: np.ndarray, front: np.ndarray, reference: tuple[float, float]
) -> np.ndarray:
    """Return, for each point alone, the area it adds to the hypervolume of ``front``.

    Vectorised over points: the area a point ``p`` adds is the integral over the first
    objective ``t`` from ``p[0]`` to the reference of ``min(ref[1], m(t)) - p[1]`` where
    positive, ``m(t)`` being the smallest second objective among front points whose first
    objective is at most ``t``. ``m`` is a step function, so the integral is a sum over the
    steps.

    Args:
        points: array (..., 2) of candidate points, minimised.
        front: array (p, 2) of points already held (need not be non-dominated).
        reference: the reference point.
    """
    points = np.asarray(points, dtype=float)
    front = np.asarray(front, dtype=float).reshape(-1, 2)
    front = front[(front[:, 0] < reference[0]) & (front[:, 1] < reference[1])]
    order = np.argsort(front[:, 0], kind="stable")
    starts = np.concatenate([[-np.inf], front[order, 0]])
    ends = np.concatenate([front[order, 0], [reference[0]]])
    ceilings = np.minimum.accumulate(np.concatenate([[reference[1]], front[order, 1]]))
    first = np.minimum(points[..., 0], reference[0])[..., None]
    widths = np.maximum(0.0, ends - np.maximum(starts, first))
    heights = np.maximum(0.0, ceilings - points[..., 1][..., None])
    return (widths * heights).sum(axis=-1)
