"""`optnas select` writes every column of selection.csv once, whatever figures the trials hold."""

from __future__ import annotations

import csv
from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution

from optnas.studies.selection import export_selection, select_trials
from optnas.trial_attrs import STAT_KEYS


def test_selection_csv_has_each_column_once(tmp_path: Path) -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for index in range(4):
        # Early-exit and robustness figures together: every optional stat key at once.
        attrs = {
            "subnet": {"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "r": 32, "w": 1.0,
                       "exits": [1, 0, 0, 0], "epsilon": [0.5, 0.1, 0.1, 0.1]},
            "top1": 90.0 + index, "params": 1.0 + index, "macs": 2.0 + index, "activations": 0.1,
            "avg_macs": 1.5 + index, "exit_ratios": [0.5, 0.5], "exit_top1": [80.0, 90.0],
            "exit_macs": [1.0, 2.0], "epsilon": [0.5], "robustness": 1.0, "top1_robust": 5.0,
            "latency": 3.0 + index, "latency_p90": 3.5 + index, "avg_latency": 2.0 + index,
            "exit_latency": [1.0, 3.0 + index], "flash_kb": 900.0 + index, "sram_kb": 100.0 + index,
            "flash_kb_float32": 3600.0 + index, "sram_kb_float32": 400.0 + index, "top1_float": 89.0 + index,
                "arena_kb": 60.0 + index, "arena_head_kb": 15.0, "arena_tail_kb": 45.0 + index,
                "tflite_kb": 300.0 + index,
        }
        study.add_trial(optuna.trial.create_trial(
            values=[90.0 + index, 1.0 + index], params={"x": float(index)},
            distributions={"x": FloatDistribution(0, 10)}, user_attrs=attrs,
        ))
    rows, _ = export_selection(study, select_trials(study, 3, "avg_macs"), "avg_macs", tmp_path / "chosen")
    with open(tmp_path / "chosen" / "selection.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert len(header) == len(set(header)), header
    assert set(STAT_KEYS) - {"tiny_ml", "peak_activations", "alpha_norm"} <= set(header)
    assert len(rows) == 3
