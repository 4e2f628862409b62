"""Choosing a batch of candidates spread along the predicted front."""

from __future__ import annotations

import numpy as np

from optnas.samplers.evolution import rank_and_crowding
from optnas.studies.hypervolume import hypervolume_improvements_2d


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
    region; candidates adding nothing are ranked by (feasibility-first rank, crowding) after.
    One objective: the best predicted values.

    Args:
        objectives: array (n, m) of the candidates' (predicted) objectives, minimised.
        violation: array (n,) of their constraint violations.
        k: the batch size.
        evaluated_front: array (p, m) of the evaluated feasible front, minimised.
        reference: the hypervolume reference point.
    """
    objectives = np.asarray(objectives, dtype=float)
    n = len(objectives)
    ranks, crowding = rank_and_crowding(objectives, violation)
    fallback = [int(i) for i in np.lexsort((-crowding, ranks))]
    if objectives.shape[1] != 2:
        return fallback[:k]
    front = np.asarray(evaluated_front, dtype=float).reshape(-1, 2)
    # Deeper fronts rarely add hypervolume; leaving them out keeps the greedy loop short.
    pool = np.flatnonzero((np.asarray(violation) <= 0) & (ranks <= 3))
    picked: list[int] = []
    while len(picked) < min(k, n) and len(pool):
        gains = hypervolume_improvements_2d(objectives[pool], front, reference)
        best = int(np.argmax(gains))
        if gains[best] <= 0:
            break
        picked.append(int(pool[best]))
        front = np.vstack([front, objectives[pool[best]]])
        pool = np.delete(pool, best)
    picked += [i for i in fallback if i not in picked][: k - len(picked)]
    return picked

