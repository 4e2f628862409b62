"""Choosing a batch of candidates spread along the predicted front."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optnas.pareto import constrained_ranks, front_indices, hypervolume_improvements_2d


@dataclass(frozen=True)
class ExpectedGain:
    """Choose one pick in ``every`` by its expected hypervolume gain, averaged over draws of the
    predictive distribution, and the rest by their optimistic predictions.

    An optimistic prediction (the mean moved a fraction of a deviation towards better) sees
    little beyond the evaluated front where the model knows nothing: there the mean falls back
    towards the average trial, and a region that could extend the front (a far piece of a
    disconnected front) is never tried. The expected gain counts the whole tail. Picks by it
    alone spend the search on such long shots and stop refining the front, so only a share of
    the picks use it, the same share whatever the batch size: with batches of ``every`` the
    first of each, with batches of one every ``every``-th.

    Args:
        every: the picks numbered (from 0, the first pick after the initial design) by a
            multiple of ``every`` maximise the expected gain; a batch takes its share first.
        draws: draws of every candidate's predictions the gain is averaged over.
    """

    every: int = 5
    draws: int = 32

    def __post_init__(self) -> None:
        if self.every < 1 or self.draws < 1:
            raise ValueError(f"every and draws must be at least 1, got {self.every} and {self.draws}")

    def picks(self, first: int, n: int) -> int:
        """Return how many of the picks numbered ``first`` to ``first + n - 1`` maximise the expected gain.

        Args:
            first: the number of a batch's first pick.
            n: the batch size.
        """
        return len(range(-(-first // self.every) * self.every, first + n, self.every))


@dataclass(frozen=True)
class Outcomes:
    """Draws of the candidates' predictions, and how many picks maximise the gain averaged over them.

    Args:
        objectives: array (s, n, m) of ``s`` draws of every candidate's objectives, minimised.
        violation: array (s, n) of the matching constraint violations.
        picks: how many picks (the first) are chosen by the expected gain.
    """

    objectives: np.ndarray
    violation: np.ndarray
    picks: int


def select_batch(
    objectives: np.ndarray,
    violation: np.ndarray,
    k: int,
    evaluated_front: np.ndarray,
    reference: tuple[float, ...],
    outcomes: Outcomes | None = None,
) -> list[int]:
    """Return the indices of ``k`` candidates, each adding the most predicted hypervolume.

    Two objectives: greedy hypervolume contribution over the evaluated feasible front plus the
    candidates already picked, so the batch fills the front's gaps instead of crowding one
    region. With ``outcomes`` the first picks maximise the contribution averaged over its
    draws, each draw with its own front (the draws of earlier picks joined to it), and only
    where the draw is feasible. The candidates that add nothing (any number of objectives)
    follow, best (feasibility-first) rank first, and within a rank the one farthest from every
    evaluated front point and earlier pick: a candidate next to an evaluated point teaches
    little, while NSGA-II's crowding distance would call it a boundary and pick it first.

    Args:
        objectives: array (n, m) of the candidates' (predicted) objectives, minimised.
        violation: array (n,) of their constraint violations.
        k: the batch size.
        evaluated_front: array (p, m) of the evaluated feasible front, minimised.
        reference: the hypervolume reference point.
        outcomes: draws of the predictions for the first picks (None: every pick by ``objectives``).
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
    if m == 2 and outcomes is not None:
        for best in _expected_picks(outcomes, min(k, outcomes.picks), held, reference):
            picked.append(best)
            if best in pool:
                pool.remove(best)
            held = np.vstack([held, objectives[best]])
    gaining = np.array([i for i in pool if violation[i] <= 0], dtype=np.int64)
    while m == 2 and len(picked) < k and len(gaining):
        gains = hypervolume_improvements_2d(objectives[gaining], held, reference)
        if gains.max() <= 0:
            break
        best = int(gaining[np.argmax(gains)])
        picked.append(best)
        pool.remove(best)
        held = np.vstack([held, objectives[best]])
        # A later pick only shrinks the gains: candidates without any are out for good.
        gaining = gaining[(gains > 0) & (gaining != best)]
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


def _expected_picks(outcomes: Outcomes, picks: int, front: np.ndarray, reference: tuple[float, ...]) -> list[int]:
    """Up to ``picks`` candidates, one by one, each with the largest hypervolume gain averaged over
    the draws (two objectives); fewer when no candidate is expected to gain anything."""
    # Dominated points add nothing to a hypervolume: without them every draw's gains cost less.
    fronts = [front[front_indices(front)]] * len(outcomes.objectives)
    candidates = np.arange(outcomes.objectives.shape[1])
    chosen: list[int] = []
    while len(chosen) < picks and len(candidates):
        gains = np.mean([hypervolume_improvements_2d(drawn[candidates], held, reference) * (excess[candidates] <= 0)
                         for drawn, excess, held in zip(outcomes.objectives, outcomes.violation, fronts)], axis=0)
        if gains.max() <= 0:
            break
        # A later pick only shrinks the gains: candidates without any are out for good.
        candidates, gains = candidates[gains > 0], gains[gains > 0]
        best = int(candidates[np.argmax(gains)])
        chosen.append(best)
        candidates = candidates[candidates != best]
        fronts = [np.vstack([held, drawn[best]]) for drawn, held in zip(outcomes.objectives, fronts)]
    return chosen
