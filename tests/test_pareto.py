"""The Pareto helpers: fronts, feasibility-first ranks, crowding, hypervolume and its improvements."""

from __future__ import annotations

import numpy as np
import pytest

from optnas.pareto import (
    constrained_ranks,
    front_2d,
    front_indices,
    hypervolume_2d,
    hypervolume_improvements_2d,
    rank_and_crowding,
)


def test_hypervolume_of_a_staircase_by_hand() -> None:
    # Rectangles [1, 4] x [3, 4] and [2, 4] x [1, 3] (reference (4, 4)): 3 + 4.
    assert hypervolume_2d(np.array([[1.0, 3.0], [2.0, 1.0], [3.0, 3.5]]), (4.0, 4.0)) == 7.0
    assert hypervolume_2d(np.array([[5.0, 1.0]]), (4.0, 4.0)) == 0.0


def test_improvements_equal_the_difference_of_hypervolumes() -> None:
    rng = np.random.default_rng(1)
    reference = (1.1, 1.05)
    for _ in range(300):
        front = rng.random((rng.integers(0, 8), 2)) * 1.2
        points = rng.random((6, 2)) * 1.3
        expected = [hypervolume_2d(np.vstack([front, p]), reference) - hypervolume_2d(front, reference)
                    for p in points]
        np.testing.assert_allclose(hypervolume_improvements_2d(points, front, reference), expected, atol=1e-12)


def test_improvements_on_a_grid_of_ties_keep_the_points_shape() -> None:
    # Coarse values put points on the front's steps and edges, where "below the staircase" is decided.
    rng = np.random.default_rng(3)
    reference = (1.2, 1.2)
    for _ in range(200):
        front = rng.integers(0, 7, size=(rng.integers(1, 8), 2)) / 5.0
        points = rng.integers(-1, 8, size=(3, 5, 2)) / 5.0
        expected = [[hypervolume_2d(np.vstack([front, p]), reference) - hypervolume_2d(front, reference) for p in draw]
                    for draw in points]
        np.testing.assert_allclose(hypervolume_improvements_2d(points, front, reference), expected, atol=1e-12)


def test_improvements_are_zero_for_dominated_points() -> None:
    front = np.array([[0.0, 0.5], [0.5, 0.0]])
    points = np.array([[0.6, 0.6], [0.5, 0.5], [2.0, 0.0]])
    assert (hypervolume_improvements_2d(points, front, (1.0, 1.0)) == 0).all()


def test_front_2d_agrees_with_the_ranks_on_random_sets() -> None:
    rng = np.random.default_rng(2)
    for _ in range(100):
        # Coarse values, so that ties and repeated points occur.
        points = rng.integers(0, 6, size=(rng.integers(1, 30), 2)).astype(float)
        expected = np.unique(points[front_indices(points)], axis=0)
        front = front_2d(points)
        assert (np.diff(front[:, 0]) > 0).all()
        np.testing.assert_array_equal(front, expected)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_peeled_ranks_equal_the_dominance_matrix_ranks(m: int) -> None:
    """The fast peeling (a sort for two objectives, a sweep for three, blocks for more)
    against the full dominance matrix, written out here."""
    rng = np.random.default_rng(m)
    for _ in range(150):
        n = int(rng.integers(1, 60))
        # Coarse values, so that ties and repeated points occur.
        objectives = rng.integers(0, 5, size=(n, m)).astype(float)
        violation = np.where(rng.random(n) < 0.2, rng.integers(1, 3, n), 0).astype(float)
        dominates = np.where(
            (violation[:, None] <= 0) & (violation[None, :] <= 0),
            (objectives[:, None] <= objectives[None]).all(2) & (objectives[:, None] < objectives[None]).any(2),
            violation[:, None] < violation[None, :],
        )
        expected, remaining, rank = np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool), 0
        while remaining.any():
            front = remaining & ~dominates[remaining].any(axis=0)
            expected[front], remaining, rank = rank, remaining & ~front, rank + 1
        np.testing.assert_array_equal(constrained_ranks(objectives, violation, max_rank=n), expected)
        np.testing.assert_array_equal(constrained_ranks(objectives, violation, max_rank=2), np.minimum(expected, 3))


def test_constrained_ranks_put_feasible_first() -> None:
    objectives = np.array([[1.0, 1.0], [0.0, 0.0], [2.0, 2.0], [0.5, 3.0]])
    violation = np.array([0.0, 0.5, 0.0, 0.0])
    ranks = constrained_ranks(objectives, violation)
    # Point 1 dominates everything in value but violates a constraint: it ranks last.
    assert ranks.tolist() == [0, 2, 1, 0]
    # A front of two points is all boundary.
    assert np.isinf(rank_and_crowding(objectives, violation)[1][[0, 3]]).all()


def _front_crowding(front: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of one front, column by column as Deb et al. write it."""
    distance = np.zeros(len(front))
    if len(front) <= 2:
        return np.full(len(front), np.inf)
    for column in range(front.shape[1]):
        order = np.argsort(front[:, column], kind="stable")
        values = front[order, column]
        distance[order[[0, -1]]] = np.inf
        if values[-1] > values[0]:
            distance[order[1:-1]] += (values[2:] - values[:-2]) / (values[-1] - values[0])
    return distance


def test_crowding_of_all_fronts_at_once_equals_each_fronts_own() -> None:
    rng = np.random.default_rng(4)
    for trial in range(300):
        n, m = rng.integers(1, 40), rng.integers(2, 4)
        # Coarse values half the time: ties within and across fronts.
        objectives = rng.integers(0, 5, (n, m)).astype(float) if trial % 2 else rng.random((n, m))
        violation = np.where(rng.random(n) < 0.2, rng.integers(0, 3, n), 0).astype(float)
        ranks, crowding = rank_and_crowding(objectives, violation)
        for rank in np.unique(ranks):
            members = ranks == rank
            np.testing.assert_array_equal(crowding[members], _front_crowding(objectives[members]))


def test_front_indices_keep_the_ten_best_of_a_single_objective() -> None:
    values = np.arange(15, 0, -1, dtype=float)[:, None]
    assert front_indices(values) == list(range(14, 4, -1))
    assert front_indices(np.zeros((0, 2))) == []
