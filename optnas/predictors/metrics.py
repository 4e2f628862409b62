"""Metrics that judge an accuracy predictor: rank agreement and error."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import kendalltau


def _paired(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred must have the same length, got {y_true.size} and {y_pred.size}"
        )
    return y_true, y_pred


def kendall_tau(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Return Kendall's τ-b between targets and predictions.

    A constant array, or fewer than two values, ranks nothing: the result is then 0.0
    rather than nan, so that it can be averaged over folds.

    Args:
        y_true: the measured values.
        y_pred: the predicted values, in the same order.
    """
    y_true, y_pred = _paired(y_true, y_pred)
    if y_true.size < 2:
        return 0.0
    tau = kendalltau(y_true, y_pred).statistic
    return 0.0 if np.isnan(tau) else float(tau)


def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Return the root mean squared error of the predictions.

    Args:
        y_true: the measured values.
        y_pred: the predicted values, in the same order.
    """
    y_true, y_pred = _paired(y_true, y_pred)
    if y_true.size == 0:
        raise ValueError("rmse needs at least one value")
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))
