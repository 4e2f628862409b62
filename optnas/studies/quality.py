"""How well the surrogate sampler's predictors did on the batches they proposed."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from optnas.predictors.metrics import kendall_tau, rmse
from optnas.samplers.surrogate import BATCH_ATTR_PREFIX
from optnas.trial_attrs import SUBNET


def batch_quality(study: Study, trials: list[FrozenTrial] | None = None) -> dict[int, dict[str, Any]]:
    """Return, per stored batch, its predictors' out-of-sample Kendall τ and RMSE on it.

    Each batch was predicted before it was evaluated, so these are honest figures. Per
    iteration: ``quantity`` (the first objective's figure, or the first predicted one),
    ``kendall_tau``, ``rmse``, ``n`` and ``winner`` for it, and the same under ``sec`` for
    every other predicted quantity.

    Args:
        study: the study, holding the batches.
        trials: the completed trials whose figures are compared (default: all the study's).
    """
    if trials is None:
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    actual: dict[str, dict[str, Any]] = {}
    for trial in trials:
        if SUBNET in trial.user_attrs:
            actual.setdefault(json.dumps(trial.user_attrs[SUBNET], sort_keys=True), trial.user_attrs)
    quality = {}
    for key, batch in study.user_attrs.items():
        if not key.startswith(BATCH_ATTR_PREFIX) or not batch.get("predicted"):
            continue
        figures = {
            name: _prediction_quality(batch, name, actual) for name in batch["predicted"]
        }
        figures = {name: value for name, value in figures.items() if value is not None}
        main = batch["first_objective"] if batch["first_objective"] in figures else next(iter(figures), None)
        if main is not None:
            quality[batch["iteration"]] = {
                "quantity": main, **figures.pop(main), **({"sec": figures} if figures else {})
            }
    return quality


def _prediction_quality(batch: dict[str, Any], name: str, actual: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """Kendall τ and RMSE of one quantity's predictions on the batch members evaluated so far."""
    pairs = []
    for subnet, predicted in zip(batch["subnets"], batch["predicted"][name]):
        attrs = actual.get(json.dumps(subnet, sort_keys=True))
        if attrs is not None and name in attrs:
            pairs.append((predicted, float(attrs[name])))
    if len(pairs) < 2:
        return None
    predicted, observed = map(np.array, zip(*pairs))
    return {
        "kendall_tau": float(kendall_tau(observed, predicted)),
        "rmse": float(rmse(observed, predicted)),
        "n": len(pairs),
        "winner": batch.get("predictors", {}).get(name),
    }
