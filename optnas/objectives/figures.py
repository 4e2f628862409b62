"""Figures of merit computed from a candidate's stats: tiny_ml, constraint values, objectives."""

from __future__ import annotations

from typing import Any

# Optuna directions of every objective; top1 is an accuracy in % and is maximised.
DIRECTIONS = {
    "top1": "maximize",
    "params": "minimize",
    "macs": "minimize",
    "activations": "minimize",
    "tiny_ml": "minimize",
    "top1_robust": "minimize",
    "avg_macs": "minimize",
}


def tiny_ml(
    params: float,
    macs: float,
    activations: float,
    *,
    pmax: float | None,
    mmax: float | None,
    amax: float | None,
    wp: float,
    wm: float,
    wa: float,
    penalty: float,
) -> float:
    """Return the CNAS figure of merit ``Σ w·(x + P·max(0, x − xmax))`` over params, MACs, activations.

    A bound that is not set adds no penalty term.

    Args:
        params: parameters in millions.
        macs: MACs in millions.
        activations: activations in millions.
        pmax: bound on params, or None.
        mmax: bound on MACs, or None.
        amax: bound on activations, or None.
        wp: weight of params.
        wm: weight of MACs.
        wa: weight of activations.
        penalty: the penalty factor P.
    """

    def term(value: float, bound: float | None) -> float:
        return value + (penalty * max(0.0, value - bound) if bound is not None else 0.0)

    return wp * term(params, pmax) + wm * term(macs, mmax) + wa * term(activations, amax)


def constraint_values(stats: dict[str, Any], bounds: dict[str, float]) -> dict[str, float]:
    """Return each constraint's value (≤ 0 means satisfied), in the order of ``bounds``.

    Args:
        stats: the candidate's stats (``top1`` in %, costs in millions).
        bounds: constraint name → bound, as :attr:`SearchConfig.constraint_bounds`.
    """
    values = {}
    for name, bound in bounds.items():
        if name == "top1min":
            values[name] = float(bound - stats["top1"])
        else:
            values[name] = float(stats[name] - bound)
    return values


def objective_values(stats: dict[str, Any], objectives: list[str]) -> list[float]:
    """Return the values of the named objectives, in order.

    Args:
        stats: the candidate's stats.
        objectives: objective names, keys of ``stats``.
    """
    return [float(stats[name]) for name in objectives]
