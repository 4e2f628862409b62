"""The interface shared by every accuracy predictor, and helpers for their inputs."""

from __future__ import annotations

import abc
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

# Rows per block when a prediction builds an (n_rows, n_train) matrix: 8,192 x 2,000
# float64 values take 131 MB, where 100,000 rows at once would take 1.6 GB.
_CHUNK_ROWS = 8192


class Predictor(RegressorMixin, BaseEstimator, abc.ABC):
    """A regressor from an architecture's integer gene encoding to a metric such as top-1 error.

    Subclasses implement ``_fit`` and ``_predict`` on validated float arrays; this class
    checks shapes, converts lists and integers, and refuses to predict before ``fit``.
    """

    def fit(self, X: ArrayLike, y: ArrayLike) -> Predictor:
        """Fit the predictor.

        Args:
            X: gene encodings, shape (n_samples, n_genes), at least two samples.
            y: targets, shape (n_samples,).
        """
        X, y = validate_data(
            self, X, y, dtype=np.float64, ensure_min_samples=2, y_numeric=True
        )
        self._fit(X, y)
        return self

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predict the target of each encoding.

        Args:
            X: gene encodings, shape (n_samples, n_genes) with the genes seen by ``fit``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return np.asarray(self._predict(X), dtype=np.float64).reshape(len(X))

    @abc.abstractmethod
    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        """Fit on validated float arrays; fitted attributes end with an underscore."""

    @abc.abstractmethod
    def _predict(self, X: np.ndarray) -> np.ndarray:
        """Predict on a validated float array."""


class _UnitCube:
    """Map the genes that vary in the training set onto [0, 1] and drop the others.

    A constant gene carries nothing to learn from, and its column would make a linear
    model (the RBF tail) rank-deficient; genes with many levels (resolution) get the same
    range as three-level genes, so that no gene dominates a distance.

    Args:
        X: the training encodings.
    """

    def __init__(self, X: np.ndarray) -> None:
        low, high = X.min(axis=0), X.max(axis=0)
        self.keep = high > low
        self.low = low[self.keep]
        self.span = (high - low)[self.keep]

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return (X[:, self.keep] - self.low) / self.span


def _seed(random_state: int | np.random.RandomState | None) -> int:
    """Draw an integer seed for libraries that take no RandomState (torch, xgboost)."""
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def _in_chunks(predict: Callable[[np.ndarray], np.ndarray], X: np.ndarray) -> np.ndarray:
    """Apply ``predict`` to blocks of rows, bounding the memory of kernel matrices."""
    return np.concatenate(
        [predict(X[start : start + _CHUNK_ROWS]) for start in range(0, len(X), _CHUNK_ROWS)]
    )
