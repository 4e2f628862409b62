"""Reading trials back from a study: rows for tables, JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from optnas.objectives.nas import STAT_KEYS
from optnas.studies.storage import open_storage

# mce: mean corruption error of `optnas ood`, kept in the study's user attributes.
COLUMNS = ("number", "state", "feasible") + STAT_KEYS + ("mce", "duplicate_of", "subnet")


def load_trials(storage_url: str, study_name: str, *, pareto: bool = False) -> list[FrozenTrial]:
    """Return a study's trials, or its feasible Pareto set.

    Args:
        storage_url: the storage URL.
        study_name: the study.
        pareto: only the trials of the feasible Pareto set (Optuna's ``best_trials``).
    """
    study = load_study_readonly(storage_url, study_name)
    return pareto_trials(study) if pareto else study.get_trials(deepcopy=False)


def load_study_readonly(storage_url: str, study_name: str) -> optuna.Study:
    """Load a study to read it (with a sampler that never runs), or say which studies exist.

    Args:
        storage_url: the storage URL.
        study_name: the study.
    """
    storage = open_storage(storage_url)
    names = optuna.get_all_study_names(storage)
    if study_name not in names:
        raise ValueError(f"no study named '{study_name}'; studies here: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=study_name, storage=storage, sampler=optuna.samplers.RandomSampler())


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Return the feasible Pareto set, each architecture once, by trial number.

    Args:
        study: the study.
    """
    best = [trial for trial in study.best_trials if "duplicate_of" not in trial.user_attrs]
    return sorted(best, key=lambda trial: trial.number)


def trial_row(trial: FrozenTrial) -> dict[str, Any]:
    """Return one trial as a flat row of the listed columns.

    Args:
        trial: the trial.
    """
    row: dict[str, Any] = {"number": trial.number, "state": trial.state.name}
    if trial.state == TrialState.COMPLETE:
        row["feasible"] = all(value <= 0 for value in trial.constraints.values())
    for key in STAT_KEYS + ("duplicate_of", "subnet"):
        if key in trial.user_attrs:
            row[key] = trial.user_attrs[key]
    if trial.state == TrialState.FAIL:
        row["fail_reason"] = trial.user_attrs.get("fail_reason", "")
    return row


def format_rows(rows: list[dict[str, Any]], fmt: str, columns: tuple[str, ...] = COLUMNS + ("fail_reason",)) -> str:
    """Render rows as ``table``, ``json`` or ``csv``.

    Args:
        rows: rows such as those of :func:`trial_row`.
        fmt: the format.
        columns: the columns to show, in order, when some row has them.
    """
    if fmt == "json":
        return json.dumps(rows, indent=2)
    columns = [c for c in columns if any(c in row for row in rows)]
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()})
        return buffer.getvalue()
    table_columns = [c for c in columns if c != "subnet"]
    cells = [[_cell(row.get(c)) for c in table_columns] for row in rows]
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(table_columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(table_columns, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(line, widths)) for line in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "[" + ",".join(_cell(item) for item in value) + "]"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.3e}"
    return str(value)


def with_n_exits(trials: list[FrozenTrial], count: int) -> list[FrozenTrial]:
    """Keep the trials whose eemobilenetv3 architecture has ``count`` intermediate exits.

    Args:
        trials: trials of an eemobilenetv3 study.
        count: the number of intermediate exits (``sum(subnet["exits"])``).
    """
    from optnas.spaces.eemobilenetv3 import N_EXITS, n_exits

    if not 1 <= count <= N_EXITS:
        raise ValueError(f"--n-exits must be between 1 and {N_EXITS}, got {count}")
    subnets = [trial.user_attrs.get("subnet") for trial in trials]
    if any(subnet is not None and "exits" not in subnet for subnet in subnets):
        raise ValueError("--n-exits applies to eemobilenetv3 studies; this study's architectures have no exits")
    return [trial for trial, subnet in zip(trials, subnets) if subnet is not None and n_exits(subnet) == count]
