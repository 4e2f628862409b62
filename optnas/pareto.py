"""Pareto helpers on arrays of objectives, all minimised: fronts, ranks, crowding, hypervolume.

Numpy only, so that every layer (samplers, studies, benchmarks) can share them.
"""

from __future__ import annotations

import bisect

import numpy as np

# Rows checked at once when fronts are peeled without the full dominance matrix.
_BLOCK = 256


def front_2d(points: np.ndarray) -> np.ndarray:
    """Return the non-dominated points of a two-objective set, by increasing first objective.

    Of identical points one is kept. A sort and a running minimum: fast on a whole
    enumerated space, where pairwise dominance would need n² memory.

    Args:
        points: array of shape (n, 2).
    """
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    ordered = points[np.lexsort((points[:, 1], points[:, 0]))]
    lowest_before = np.concatenate([[np.inf], np.minimum.accumulate(ordered[:, 1])[:-1]])
    return ordered[ordered[:, 1] < lowest_before]


def hypervolume_2d(points: np.ndarray, reference: tuple[float, float]) -> float:
    """Return the area dominated by ``points`` and bounded by ``reference``.

    Points that do not strictly dominate the reference contribute nothing.

    Args:
        points: array of shape (n, 2).
        reference: the reference point.
    """
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    inside = points[(points[:, 0] < reference[0]) & (points[:, 1] < reference[1])]
    area, ceiling = 0.0, reference[1]
    for first, second in front_2d(inside):
        area += (reference[0] - first) * (ceiling - second)
        ceiling = second
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
        points: array (..., 2) of candidate points.
        front: array (p, 2) of points already held (need not be non-dominated).
        reference: the reference point.
    """
    points = np.asarray(points, dtype=float)
    flat = points.reshape(-1, 2)
    front = np.asarray(front, dtype=float).reshape(-1, 2)
    front = front[(front[:, 0] < reference[0]) & (front[:, 1] < reference[1])]
    order = np.argsort(front[:, 0], kind="stable")
    starts = np.concatenate([[-np.inf], front[order, 0]])
    ends = np.concatenate([front[order, 0], [reference[0]]])
    ceilings = np.minimum.accumulate(np.concatenate([[reference[1]], front[order, 1]]))
    # Only points below the staircase at their first objective add anything: in a batch's
    # search most candidates lie above it, and the sum over the steps is skipped for them.
    adding = flat[:, 0] < reference[0]
    adding &= flat[:, 1] < ceilings[np.searchsorted(starts[1:], flat[:, 0], side="right")]
    gains = np.zeros(len(flat))
    first = flat[adding, 0][:, None]
    widths = np.maximum(0.0, ends - np.maximum(starts, first))
    heights = np.maximum(0.0, ceilings - flat[adding, 1][:, None])
    gains[adding] = (widths * heights).sum(axis=-1)
    return gains.reshape(points.shape[:-1])


def constrained_ranks(objectives: np.ndarray, violation: np.ndarray, max_rank: int | None = None) -> np.ndarray:
    """Return the non-domination rank of every row, feasibility first (0 = best front).

    A feasible point dominates every infeasible one; of two infeasible points the one with the
    smaller violation dominates; feasible points compare by Pareto dominance.

    Args:
        objectives: array (n, m).
        violation: array (n,), total constraint violation (0 when feasible).
        max_rank: rank only the fronts up to this one and give every other row
            ``max_rank + 1`` (None: every front). The fronts are then peeled one by one
            without the n × n dominance matrix, for the many candidates of a batch.
    """
    objectives = np.asarray(objectives, dtype=float)
    violation = np.asarray(violation, dtype=float)
    n = len(objectives)
    if max_rank is not None or objectives.shape[1] == 2:
        # Two objectives peel in O(n log n) a front, faster than the matrix at any size.
        return _first_ranks(objectives, violation, n if max_rank is None else max_rank)
    less_equal = (objectives[:, None, :] <= objectives[None, :, :]).all(axis=2)
    less = (objectives[:, None, :] < objectives[None, :, :]).any(axis=2)
    pareto = less_equal & less
    feasible = violation <= 0
    both_feasible = feasible[:, None] & feasible[None, :]
    dominates = np.where(both_feasible, pareto, violation[:, None] < violation[None, :])
    ranks = np.full(n, -1, dtype=np.int64)
    dominated_by = dominates.sum(axis=0)
    rank = 0
    remaining = np.ones(n, dtype=bool)
    while remaining.any():
        front = remaining & (dominated_by == 0)
        ranks[front] = rank
        remaining &= ~front
        dominated_by = dominated_by - dominates[front].sum(axis=0)
        rank += 1
    return ranks


def _first_ranks(objectives: np.ndarray, violation: np.ndarray, max_rank: int) -> np.ndarray:
    """``constrained_ranks`` up to ``max_rank``, every deeper row at ``max_rank + 1``."""
    ranks = np.full(len(objectives), max_rank + 1, dtype=np.int64)
    remaining = np.flatnonzero(violation <= 0)
    rank = 0
    while rank <= max_rank and len(remaining):
        front = _non_dominated(objectives[remaining])
        ranks[remaining[front]] = rank
        remaining = remaining[~front]
        rank += 1
    if len(remaining) == 0 and rank <= max_rank:
        # Infeasible rows rank after every feasible front, by their violation, ties alike.
        infeasible = np.flatnonzero(violation > 0)
        levels = np.unique(violation[infeasible], return_inverse=True)[1]
        ranks[infeasible] = np.minimum(rank + levels, max_rank + 1)
    return ranks


def _non_dominated(points: np.ndarray) -> np.ndarray:
    """Mask of the rows no other row dominates (identical rows do not dominate each other)."""
    n, m = points.shape
    order = np.lexsort(points.T[::-1])
    ordered = points[order]
    keep = np.zeros(n, dtype=bool)
    if m == 2:
        # In lexicographic order only earlier rows can dominate: a row is dominated iff an
        # earlier row has a smaller second objective, or an equal one with a smaller first.
        first, second = ordered[:, 0], ordered[:, 1]
        lowest_before = np.concatenate([[np.inf], np.minimum.accumulate(second)[:-1]])
        # The lowest second objective among rows with a strictly smaller first objective.
        starts = np.flatnonzero(np.concatenate([[True], first[1:] != first[:-1]]))
        group_start = starts[np.searchsorted(starts, np.arange(n), side="right") - 1]
        lowest_strictly_before = np.concatenate([[np.inf], np.minimum.accumulate(second)])[group_start]
        keep[order] = ~((lowest_before < second) | (lowest_strictly_before <= second))
        return keep
    if m == 3:
        return _non_dominated_3d(points)
    # More objectives: blocks of rows in that order, each checked against the front kept so
    # far and against the earlier rows of its block (dominance is transitive).
    front = ordered[:0]
    for start in range(0, n, _BLOCK):
        rows = np.arange(start, min(n, start + _BLOCK))
        rows = rows[~_dominates(front, ordered[rows]).any(axis=0)]
        block = ordered[rows]
        survivors = rows[~np.tril(_dominates(block, block).T, -1).any(axis=1)]
        keep[order[survivors]] = True
        front = np.concatenate([front, ordered[survivors]])
    return keep


def _non_dominated_3d(points: np.ndarray) -> np.ndarray:
    """``_non_dominated`` for three objectives by one sweep, O(n log n) comparisons.

    Among distinct rows in lexicographic order, a row is dominated exactly when an earlier row
    is no worse on the second and third objectives (it is no worse on the first, and differs).
    The earlier rows' lowest third objective for each bound on the second is a staircase,
    kept as two sorted lists: the batch pool of three-objective studies holds thousands of
    mutually non-dominated candidates, where comparing blocks against the front grows
    quadratically.
    """
    unique, inverse = np.unique(points, axis=0, return_inverse=True)
    keep = np.zeros(len(unique), dtype=bool)
    seconds: list[float] = []  # increasing
    thirds: list[float] = []  # decreasing
    for row, (_, second, third) in enumerate(unique.tolist()):
        position = bisect.bisect_right(seconds, second)
        if position and thirds[position - 1] <= third:
            continue
        keep[row] = True
        # The row replaces the steps it undercuts from its second objective on.
        if position and seconds[position - 1] == second:
            position -= 1
        end = position
        while end < len(seconds) and thirds[end] >= third:
            end += 1
        seconds[position:end] = [second]
        thirds[position:end] = [third]
    return keep[inverse.ravel()]


def _dominates(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Matrix (len(a), len(b)): row ``i`` of ``a`` Pareto-dominates row ``j`` of ``b``."""
    return (a[:, None, :] <= b[None, :, :]).all(axis=2) & (a[:, None, :] < b[None, :, :]).any(axis=2)


def front_indices(objectives: np.ndarray) -> list[int]:
    """Return the indices of the non-dominated rows (the 10 best with a single objective).

    Args:
        objectives: array (n, m).
    """
    if len(objectives) == 0:
        return []
    if objectives.shape[1] == 1:
        return [int(i) for i in np.argsort(objectives[:, 0], kind="stable")[:10]]
    ranks = constrained_ranks(objectives, np.zeros(len(objectives)))
    return [int(i) for i in np.flatnonzero(ranks == 0)]


def rank_and_crowding(objectives: np.ndarray, violation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return feasibility-first ranks and within-front crowding distances.

    Args:
        objectives: array (n, m).
        violation: array (n,).
    """
    objectives = np.asarray(objectives, dtype=float)
    ranks = constrained_ranks(objectives, violation)
    # NSGA-II's crowding distance of every front at once, each column sorted within the fronts:
    # boundaries infinite, others the sum of their neighbours' gaps over the front's span.
    crowding = np.zeros(len(ranks))
    for column in range(objectives.shape[1]):
        order = np.lexsort((objectives[:, column], ranks))
        values, fronts = objectives[order, column], ranks[order]
        first = np.concatenate([[True], fronts[1:] != fronts[:-1]])
        last = np.concatenate([fronts[1:] != fronts[:-1], [True]])
        starts = np.flatnonzero(first)
        span = np.repeat(values[last] - values[first], np.diff(np.append(starts, len(order))))
        crowding[order[first | last]] = np.inf
        inner = np.flatnonzero(~first & ~last & (span > 0))
        crowding[order[inner]] += (values[inner + 1] - values[inner - 1]) / span[inner]
    # Fronts of one or two rows are all boundary.
    crowding[np.bincount(ranks)[ranks] <= 2] = np.inf
    return ranks, crowding
