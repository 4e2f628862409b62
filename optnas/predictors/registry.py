"""Predictors by name: :func:`get_predictor`."""

from __future__ import annotations

from typing import Any

import numpy as np

from optnas.predictors import PREDICTOR_NAMES
from optnas.predictors.adaptive import CANDIDATE_CLASSES, AdaptiveSwitching
from optnas.predictors.base import Predictor

_CLASSES: dict[str, type[Predictor]] = {"as": AdaptiveSwitching, **CANDIDATE_CLASSES}
# "cart" is the name the reference's command-line help gives to "carts".
_ALIASES = {"xgboost": "xgb", "cart": "carts"}


def get_predictor(
    name: str, random_state: int | np.random.RandomState | None = None, **kwargs: Any
) -> Predictor:
    """Return an unfitted predictor by name.

    Args:
        name: one of ``PREDICTOR_NAMES`` (or the aliases "xgboost" and "cart").
        random_state: the seed, for predictors with randomness (all but rbf).
        kwargs: constructor arguments of the predictor.
    """
    key = _ALIASES.get(name, name)
    if key not in _CLASSES:
        raise ValueError(
            f"unknown predictor {name!r}; choose one of {', '.join(PREDICTOR_NAMES)}"
        )
    predictor = _CLASSES[key](**kwargs)
    if "random_state" in predictor.get_params():
        predictor.set_params(random_state=random_state)
    return predictor
