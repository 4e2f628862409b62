"""Every use of Optuna's private API, in one place.

Optuna 5.0 offers no public way to do these; ``tests/test_optuna_private.py`` checks each one
against the installed Optuna, so an Optuna release that changes them fails that test loudly
instead of breaking a search or the dashboard quietly.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution

# Optuna's legacy constraints system attribute (``constraints_func``'s list): optuna-dashboard
# 0.21 reads only this one, not ``Trial.set_constraint``'s named ``constraints:<key>``.
LEGACY_CONSTRAINTS_KEY = "constraints"


def set_legacy_constraints(trial: optuna.Trial, values: list[float]) -> None:
    """Mirror a running trial's named constraints in the legacy list optuna-dashboard reads.

    Args:
        trial: the running trial.
        values: the constraint values, in the order of their names.
    """
    trial.study._storage.set_trial_system_attr(trial._trial_id, LEGACY_CONSTRAINTS_KEY, list(values))


def study_storage(study: optuna.Study) -> optuna.storages.BaseStorage:
    """Return the storage a study reads from (``get_all_artifact_meta`` of a trial needs it).

    Args:
        study: the study.
    """
    return study._storage


def rdb_tables(study: optuna.Study) -> tuple[Any, Any]:
    """Return the SQLAlchemy engine and ``optuna.storages._rdb.models`` of an RDB study.

    Benchmarks insert thousands of finished trials with a few multi-row statements instead
    of one ORM commit per row.

    Args:
        study: a study in an RDB storage, opened without a cache.
    """
    from optuna.storages._rdb import models

    return study._storage._backend.engine, models


def study_id(study: optuna.Study) -> int:
    """Return a study's row id in its storage.

    Args:
        study: the study.
    """
    return study._study_id


def holds(distribution: BaseDistribution, value: Any) -> bool:
    """Whether ``distribution`` holds ``value`` (of a type it takes, in its range, on its step).

    Optuna checks this with a private method before it accepts a relative parameter.

    Args:
        distribution: an Optuna distribution.
        value: a parameter value, in its external form.
    """
    try:
        return bool(distribution._contains(distribution.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False
