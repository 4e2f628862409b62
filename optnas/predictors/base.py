"""The interface shared by every accuracy predictor, and helpers for their inputs."""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import ThreadpoolController

# Values per block when a prediction builds an (n_rows, n_train) matrix (2 MB of float64):
# memory stays bounded at any size, and blocks this small are reused by the allocator, where
# every fresh array of several MB is paged in anew (elementwise kernels ran 1.4-7x slower).
_BLOCK_VALUES = 1 << 18


class Predictor(RegressorMixin, BaseEstimator, abc.ABC):
    """A regressor from an architecture's integer gene encoding to a metric such as top-1 error.

    Subclasses implement ``_fit`` and ``_predict`` on validated float arrays; this class
    checks shapes, converts lists and integers, and refuses to predict before ``fit``.
    Both run BLAS on one thread: the matrices here are small enough to gain little from
    more, and on cores shared with other jobs (training candidates during a search)
    spinning BLAS threads made a 2,000-sample RBF fit 40x slower.
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
        with _threadpools().limit(limits=1, user_api="blas"):
            self._fit(X, y)
        return self

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predict the target of each encoding.

        Args:
            X: gene encodings, shape (n_samples, n_genes) with the genes seen by ``fit``.
        """
        prediction = self._on_validated(X, self._predict)
        return np.asarray(prediction, dtype=np.float64).reshape(-1)

    def _on_validated(self, X: ArrayLike, compute: Callable[[np.ndarray], Any]) -> Any:
        """Run ``compute`` on ``X`` checked as ``predict`` checks it, with BLAS on one thread."""
        check_is_fitted(self)
        if not self._passes_as_is(X):
            X = validate_data(self, X, dtype=np.float64, reset=False)
        with _threadpools().limit(limits=1, user_api="blas"):
            return compute(X)

    def _passes_as_is(self, X: Any) -> bool:
        """Whether validation would return ``X`` unchanged: a non-empty, finite float64 matrix of
        the fitted width, and no feature names to compare. A search scores candidates in a
        hundred small calls per step, where validating each cost a twentieth of the step."""
        return (isinstance(X, np.ndarray) and X.dtype == np.float64 and X.ndim == 2 and len(X) > 0
                and X.shape[1] == self.n_features_in_ and not hasattr(self, "feature_names_in_")
                and bool(np.isfinite(X).all()))

    @abc.abstractmethod
    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        """Fit on validated float arrays; fitted attributes end with an underscore."""

    @abc.abstractmethod
    def _predict(self, X: np.ndarray) -> np.ndarray:
        """Predict on a validated float array."""


class _UnitCube:
    """Map each gene's training range onto [0, 1].

    Genes with many levels (resolution) then weigh as much in a distance as three-level
    genes. A gene constant in the training set is only shifted to 0, so an unseen value
    still moves a query away from the training samples.

    Args:
        X: the training encodings.
    """

    def __init__(self, X: np.ndarray) -> None:
        self.low = X.min(axis=0)
        span = X.max(axis=0) - self.low
        self.span = np.where(span > 0, span, 1.0)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return (X - self.low) / self.span


def _standardise(y: np.ndarray) -> tuple[float, float]:
    """Return the mean and scale that map the targets to mean 0 and standard deviation 1.

    Args:
        y: the training targets; a constant target gets scale 1.
    """
    scale = float(y.std())
    return float(y.mean()), scale if scale > 0 else 1.0


@functools.cache
def _threadpools() -> ThreadpoolController:
    """Return the thread pools of the loaded native libraries, scanned once (1.7 ms)."""
    return ThreadpoolController()


def _squared_distances(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Return ``|a - b|²`` for every pair of rows, in the Gram form that runs on BLAS.

    Args:
        A: one point per row.
        B: one point per row, as many columns as ``A``.
    """
    squared = A @ B.T
    squared *= -2.0
    squared += (A**2).sum(axis=1)[:, None]
    squared += (B**2).sum(axis=1)[None, :]
    # Rounding can leave a tiny negative value where two points coincide.
    return np.maximum(squared, 0.0, out=squared)


def _seed(random_state: int | np.random.RandomState | None) -> int:
    """Draw an integer seed, for torch, xgboost and the members of an ensemble.

    Args:
        random_state: an int, a RandomState (advanced by the draw) or None (fresh entropy).
    """
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def _in_chunks(predict: Callable[[np.ndarray], np.ndarray], X: np.ndarray, width: int) -> np.ndarray:
    """Apply ``predict`` to blocks of rows, bounding the memory of kernel matrices.

    Args:
        predict: maps a block of rows to their predictions.
        X: the rows.
        width: the columns of the matrices ``predict`` builds per row (the training rows).
    """
    rows = max(1, _BLOCK_VALUES // max(width, 1))
    return np.concatenate([predict(X[start : start + rows]) for start in range(0, len(X), rows)])
