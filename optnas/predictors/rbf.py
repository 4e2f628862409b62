"""Radial basis function interpolation with a cubic kernel and a linear tail."""

from __future__ import annotations

import numpy as np
import scipy.linalg

from optnas.predictors.base import Predictor, _in_chunks, _squared_distances, _UnitCube


class RBFPredictor(Predictor):
    """Cubic RBF interpolant ``s(x) = Σ w_i |x - x_i|³ + b·[1, x]`` (as pySOT's RBFInterpolant).

    Genes are scaled to [0, 1]. Duplicate encodings are merged with their mean target, so
    the kernel matrix is never singular. The linear tail spans the principal directions of
    the training encodings only: with fewer samples than genes, or constant or collinear
    genes, the full linear tail is rank-deficient and the augmented system singular, while
    this tail keeps it solvable; when the samples are too few to leave room for kernel
    weights, it is the minimum-norm linear interpolant.

    Args:
        smoothing: added to the kernel diagonal; 0 interpolates the (merged) training points.
    """

    def __init__(self, smoothing: float = 0.0) -> None:
        self.smoothing = smoothing

    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        if self.smoothing < 0:
            raise ValueError(f"smoothing must be non-negative, got {self.smoothing}")
        self.scaler_ = _UnitCube(X)
        centers, y = _merge_duplicates(self.scaler_(X), y)
        self.mean_ = centers.mean(axis=0)
        _, singular, directions = np.linalg.svd(centers - self.mean_, full_matrices=False)
        tolerance = max(centers.shape) * np.finfo(float).eps * singular.max(initial=0.0)
        self.directions_ = directions[singular > tolerance].T
        tail = self._tail(centers)
        n_centers, n_tail = tail.shape
        kernel = _cubic(centers, centers) + self.smoothing * np.eye(n_centers)
        system = np.block([[kernel, tail], [tail.T, np.zeros((n_tail, n_tail))]])
        solution = scipy.linalg.solve(
            system, np.concatenate([y, np.zeros(n_tail)]), assume_a="sym"
        )
        self.centers_ = centers
        self.weights_ = solution[:n_centers]
        self.tail_coef_ = solution[n_centers:]

    def _tail(self, Z: np.ndarray) -> np.ndarray:
        return np.hstack([np.ones((len(Z), 1)), (Z - self.mean_) @ self.directions_])

    def _predict(self, X: np.ndarray) -> np.ndarray:
        def predict(block: np.ndarray) -> np.ndarray:
            Z = self.scaler_(block)
            return _cubic(Z, self.centers_) @ self.weights_ + self._tail(Z) @ self.tail_coef_

        return _in_chunks(predict, X, len(self.centers_))


def _cubic(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Return ``|a - b|³`` for every pair of rows (BLAS-based, several times faster than cdist)."""
    squared = _squared_distances(A, B)
    # sqrt(d²)·d² in place, not d² ** 1.5, halves the time of a large block.
    cubed = np.sqrt(squared)
    cubed *= squared
    return cubed


def _merge_duplicates(Z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the distinct rows of ``Z`` and the mean target of each."""
    unique, inverse = np.unique(Z, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    return unique, np.bincount(inverse, weights=y) / np.bincount(inverse)
