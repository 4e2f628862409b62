"""Adaptive switching: pick the predictor that ranks held-out architectures best."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.model_selection import KFold
from sklearn.utils import check_random_state

from optnas.predictors.base import Predictor, _seed
from optnas.predictors.carts import CARTsPredictor
from optnas.predictors.gp import GPPredictor
from optnas.predictors.metrics import kendall_tau
from optnas.predictors.mlp import MLPPredictor
from optnas.predictors.rbf import RBFPredictor
from optnas.predictors.xgb import XGBPredictor

CANDIDATE_CLASSES: dict[str, type[Predictor]] = {
    "rbf": RBFPredictor,
    "gp": GPPredictor,
    "carts": CARTsPredictor,
    "mlp": MLPPredictor,
    "xgb": XGBPredictor,
}
# mlp is left out of the default pool: it never ranked best on average on either benchmark
# (NAS-Bench-201 cells, synthetic MobileNetV3 encodings, 25-200 architectures), and without it
# a fit costs a quarter to a third of the time, with the same τ (benchmarks/README.md).
DEFAULT_POOL = ("rbf", "gp", "carts", "xgb")

# Kendall's τ over fewer architectures takes few values (on two it is ±1), so folds are
# made at least this large where the samples allow.
_MIN_FOLD_SIZE = 5
# Cross-validation needs two folds that each train on two samples.
_MIN_CV_SAMPLES = 4


class AdaptiveSwitching(Predictor):
    """Cross-validate a pool of predictors and refit the one that ranks best (MSuNAS).

    Every candidate is scored by Kendall's τ on each held-out fold; the winner maximises
    mean τ minus its standard deviation over folds, as MSuNAS does, which prefers a
    predictor that ranks well on every fold over one that is good on average only. Ties
    go to the earlier candidate of the pool. The winner is then refitted on all samples.
    The number of folds is ``n_folds``, reduced so that a fold holds at least 5 samples
    (and at least 2 folds). With fewer than 4 samples nothing can be cross-validated: the
    first candidate wins and the scores are nan. A fit costs ``len(pool) x folds + 1``
    candidate fits, which ``n_jobs`` spreads over processes.

    Args:
        pool: the candidate names, from ``"rbf"``, ``"gp"``, ``"carts"``, ``"mlp"``, ``"xgb"``
            (default all but ``"mlp"``).
        pool_params: constructor arguments per candidate name, e.g.
            ``{"carts": {"n_trees": 100}}``.
        n_folds: the most cross-validation folds (the reference uses 10; 5 halves the
            cost and scores τ on folds twice as large).
        n_jobs: parallel jobs over (candidate, fold) fits; None means one.
        random_state: seeds the folds, and every candidate whose ``pool_params`` set none.
    """

    def __init__(
        self,
        pool: Sequence[str] = DEFAULT_POOL,
        pool_params: Mapping[str, Mapping[str, Any]] | None = None,
        n_folds: int = 5,
        n_jobs: int | None = None,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.pool = pool
        self.pool_params = pool_params
        self.n_folds = n_folds
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        if self.n_folds < 2:
            raise ValueError(f"n_folds must be at least 2, got {self.n_folds}")
        rng = check_random_state(self.random_state)
        candidates = self._candidates(rng)
        names = list(candidates)
        if len(X) < _MIN_CV_SAMPLES:
            self.fold_scores_ = {name: np.array([]) for name in names}
            self.scores_ = dict.fromkeys(names, np.nan)
            self.winner_ = names[0]
        else:
            n_splits = min(self.n_folds, max(2, len(X) // _MIN_FOLD_SIZE))
            folds = list(KFold(n_splits, shuffle=True, random_state=_seed(rng)).split(X))
            taus = Parallel(n_jobs=self.n_jobs)(
                delayed(_fold_tau)(candidates[name], X, y, train, test)
                for name in names
                for train, test in folds
            )
            fold_taus = np.reshape(taus, (len(names), n_splits))
            self.fold_scores_ = dict(zip(names, fold_taus))
            self.scores_ = dict(zip(names, fold_taus.mean(axis=1).tolist()))
            merit = fold_taus.mean(axis=1) - fold_taus.std(axis=1)
            self.winner_ = names[int(np.argmax(merit))]
        self.estimator_ = clone(candidates[self.winner_]).fit(X, y)

    def _candidates(self, rng: np.random.RandomState) -> dict[str, Predictor]:
        """Build the pool's unfitted candidates, each with its own seed.

        Args:
            rng: draws one seed per candidate, in pool order.
        """
        pool = list(self.pool)
        unknown = sorted(set(pool) - set(CANDIDATE_CLASSES))
        if unknown or not pool or len(set(pool)) < len(pool):
            raise ValueError(
                f"pool must list distinct names from {sorted(CANDIDATE_CLASSES)}, got {pool}"
            )
        params = dict(self.pool_params or {})
        stray = sorted(set(params) - set(pool))
        if stray:
            raise ValueError(f"pool_params names {stray}, which are not in the pool {pool}")
        candidates = {}
        for name in pool:
            kwargs = dict(params.get(name, {}))
            candidate = CANDIDATE_CLASSES[name](**kwargs)
            # Drawn for every candidate, even one without randomness (rbf), so that a seed
            # depends on the candidate's position in the pool only.
            seed = _seed(rng)
            if "random_state" in candidate.get_params() and "random_state" not in kwargs:
                candidate.set_params(random_state=seed)
            candidates[name] = candidate
        return candidates

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self.estimator_.predict(X)


def _fold_tau(
    candidate: Predictor, X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray
) -> float:
    """Fit a copy of the candidate on one fold's training part; return τ on its test part."""
    return kendall_tau(y[test], clone(candidate).fit(X[train], y[train]).predict(X[test]))
