"""Accuracy predictors: regressors from an architecture's integer gene encoding to a metric.

Every predictor follows the scikit-learn estimator interface (``fit``, ``predict``,
``get_params``, ``clone``) and is deterministic given its ``random_state``.
"""

from __future__ import annotations

import importlib
from typing import Any

PREDICTOR_NAMES = ("as", "carts", "rbf", "mlp", "gp", "xgb")

# Where each public name lives. They load on first use, so that reading PREDICTOR_NAMES (the
# command line's option checks and help) does not import scikit-learn, xgboost or torch.
_LOCATIONS = {
    "AdaptiveSwitching": "adaptive",
    "DEFAULT_POOL": "adaptive",
    "CARTsPredictor": "carts",
    "GPPredictor": "gp",
    "MLPPredictor": "mlp",
    "Predictor": "base",
    "RBFPredictor": "rbf",
    "XGBPredictor": "xgb",
    "get_predictor": "registry",
    "kendall_tau": "metrics",
    "rmse": "metrics",
}


def __getattr__(name: str) -> Any:
    if name not in _LOCATIONS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LOCATIONS[name]}"), name)


__all__ = ["PREDICTOR_NAMES", *_LOCATIONS]
