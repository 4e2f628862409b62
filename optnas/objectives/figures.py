"""What a trial reports to Optuna from a candidate's stats: objective directions and values, constraint values."""

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
    "latency": "minimize",
    "avg_latency": "minimize",
    "flash_kb": "minimize",
    "sram_kb": "minimize",
}


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
