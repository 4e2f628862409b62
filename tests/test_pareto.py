"""Two-objective hypervolume and the per-candidate improvements the batch selection uses."""

from __future__ import annotations

import numpy as np

from optnas.studies.hypervolume import hypervolume_2d, hypervolume_improvements_2d


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


def test_improvements_are_zero_for_dominated_points() -> None:
    front = np.array([[0.0, 0.5], [0.5, 0.0]])
    points = np.array([[0.6, 0.6], [0.5, 0.5], [2.0, 0.0]])
    assert (hypervolume_improvements_2d(points, front, (1.0, 1.0)) == 0).all()
