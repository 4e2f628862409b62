"""Choosing a batch of candidates spread along the predicted front."""

from __future__ import annotations

import numpy as np

from optnas.pareto import constrained_ranks, hypervolume_improvements_2d


def select_batch(
    objectives: np.ndarray,
    violation: np.ndarray,
    k: int,
    evaluated_front: np.ndarray,
    reference: tuple[float, ...],
) -> list[int]:
    """Return the indices of ``k`` candidates, each adding the most predicted hypervolume.

    Two objectives: greedy hypervolume contribution over the evaluated feasible front plus the
    candidates already picked, so the batch fills the front's gaps instead of crowding one
    region. The candidates that add nothing (any number of objectives) follow, best
    (feasibility-first) rank first, and within a rank the one farthest from every evaluated
    front point and earlier pick: a candidate next to an evaluated point teaches little, while
    NSGA-II's crowding distance would call it a boundary and pick it first.

    Args:
        objectives: array (n, m) of the candidates' (predicted) objectives, minimised.
        violation: array (n,) of their constraint violations.
        k: the batch size.
        evaluated_front: array (p, m) of the evaluated feasible front, minimised.
        reference: the hypervolume reference point.
    """
    objectives = np.asarray(objectives, dtype=float)
    violation = np.asarray(violation, dtype=float)
    n, m = objectives.shape
    k = min(k, n)
    # Deeper fronts rarely add hypervolume: ranks past the fourth front are not told apart.
    ranks = constrained_ranks(objectives, violation, max_rank=3)
    held = np.asarray(evaluated_front, dtype=float).reshape(-1, m)
    # Leaving the deeper fronts out keeps both loops short.
    pool = list(np.flatnonzero(ranks <= 3))
    picked: list[int] = []
    feasible = [i for i in pool if violation[i] <= 0]
    while m == 2 and len(picked) < k and feasible:
        gains = hypervolume_improvements_2d(objectives[feasible], held, reference)
        if gains.max() <= 0:
            break
        best = feasible.pop(int(np.argmax(gains)))
        picked.append(int(best))
        pool.remove(best)
        held = np.vstack([held, objectives[best]])
    rest = np.array(pool, dtype=np.int64)
    distance = np.full(len(rest), np.inf)
    if len(held) and len(rest):
        distance = np.linalg.norm(objectives[rest][:, None, :] - held[None, :, :], axis=2).min(axis=1)
    while len(picked) < k and len(rest):
        position = int(np.lexsort((-distance, ranks[rest]))[0])
        best = int(rest[position])
        picked.append(best)
        distance = np.minimum(distance, np.linalg.norm(objectives[rest] - objectives[best], axis=1))
        rest, distance = np.delete(rest, position), np.delete(distance, position)
    picked += [int(i) for i in np.argsort(ranks, kind="stable") if i not in picked][: k - len(picked)]
    return picked
