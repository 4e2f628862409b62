"""Gradient-boosted trees with XGBoost."""

from __future__ import annotations

import numpy as np

from optnas.predictors.base import Predictor, _seed


class XGBPredictor(Predictor):
    """An XGBoost regressor of shallow trees with row and column subsampling.

    Shallow trees and a small learning rate suit the few hundred noisy samples of a
    search: the XGBoost defaults (depth 6, rate 0.3) ranked held-out architectures
    clearly worse on the synthetic MobileNetV3 benchmark.

    Args:
        n_estimators: boosting rounds.
        max_depth: the depth of each tree.
        learning_rate: the shrinkage of each round.
        subsample: the share of samples drawn for each tree.
        colsample_bytree: the share of genes drawn for each tree.
        n_jobs: XGBoost threads; one by default, which is deterministic and fast enough.
        random_state: seeds the subsampling.
    """

    def __init__(
        self,
        n_estimators: int = 500,
        max_depth: int = 3,
        learning_rate: float = 0.05,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        n_jobs: int = 1,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        # Imported on use: xgboost is a large package the other predictors do not need.
        from xgboost import XGBRegressor

        self.booster_ = XGBRegressor(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            subsample=self.subsample,
            colsample_bytree=self.colsample_bytree,
            n_jobs=self.n_jobs,
            random_state=_seed(self.random_state),
        ).fit(X, y)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self.booster_.predict(X)
