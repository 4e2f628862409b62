"""What a trial reports to Optuna from a candidate's stats: objective values and constraint values."""

from __future__ import annotations

from typing import Any

from optnas.figures import by_constraint


def constraint_values(stats: dict[str, Any], bounds: dict[str, float]) -> dict[str, float]:
    """Return each constraint's value (≤ 0 means satisfied), in the order of ``bounds``.

    Args:
        stats: the candidate's stats (``top1`` in %, costs in millions).
        bounds: constraint name → bound, as :attr:`SearchConfig.constraint_bounds`.
    """
    values = {}
    for name, bound in bounds.items():
        figure = by_constraint(name)
        values[name] = figure.constraint_value(stats[figure.name], bound)
    return values


def objective_values(stats: dict[str, Any], objectives: list[str]) -> list[float]:
    """Return the values of the named objectives, in order.

    Args:
        stats: the candidate's stats.
        objectives: objective names, keys of ``stats``.
    """
    return [float(stats[name]) for name in objectives]
