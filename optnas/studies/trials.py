"""Reading studies back, light enough for a quick command (no torch): the list of studies,
trials as rows for tables, JSON and CSV, and the OOD results kept beside them."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from optnas.errors import OptionError
from optnas.spaces import Subnet, as_subnet
from optnas.spaces.eemobilenetv3 import N_EXITS
from optnas.studies.storage import mask_password, open_storage
from optnas.trial_attrs import DUPLICATE_OF, FAIL_REASON, STAT_KEYS, SUBNET

# `optnas ood` keeps a trial's result under this study user attribute, + the trial number.
OOD_ATTR_PREFIX = "ood:trial:"
# mce: mean corruption error of `optnas ood`, kept in the study's user attributes.
COLUMNS = ("number", "state", "feasible", *STAT_KEYS, "mce", DUPLICATE_OF, SUBNET)


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
    best = [trial for trial in study.best_trials if DUPLICATE_OF not in trial.user_attrs]
    return sorted(best, key=lambda trial: trial.number)


def trial_row(trial: FrozenTrial) -> dict[str, Any]:
    """Return one trial as a flat row of the listed columns.

    Args:
        trial: the trial.
    """
    row: dict[str, Any] = {"number": trial.number, "state": trial.state.name}
    if trial.state == TrialState.COMPLETE:
        row["feasible"] = all(value <= 0 for value in trial.constraints.values())
    for key in (*STAT_KEYS, DUPLICATE_OF, SUBNET):
        if key in trial.user_attrs:
            row[key] = trial.user_attrs[key]
    if trial.state == TrialState.FAIL:
        row[FAIL_REASON] = trial.user_attrs.get(FAIL_REASON, "")
    return row


def format_rows(rows: list[dict[str, Any]], fmt: str, columns: tuple[str, ...] = (*COLUMNS, FAIL_REASON)) -> str:
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
    table_columns = [c for c in columns if c != SUBNET]
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
    if not 1 <= count <= N_EXITS:
        raise OptionError("{n_exits} must be between 1 and {most}, got {value}", most=N_EXITS, value=count)
    subnets = [trial_subnet(trial) for trial in trials]
    if any(subnet is not None and not subnet.has_exits for subnet in subnets):
        raise OptionError("{n_exits} applies to eemobilenetv3 studies; this study's architectures have no exits")
    return [trial for trial, subnet in zip(trials, subnets) if subnet is not None and subnet.n_exits == count]


def trial_subnet(trial: FrozenTrial) -> Subnet | None:
    """Return the architecture a trial stored, canonical, or None if it stored none.

    Args:
        trial: a trial of a study.
    """
    subnet = trial.user_attrs.get(SUBNET)
    if subnet is None:
        return None
    try:
        return as_subnet(subnet)
    except ValueError as error:
        raise ValueError(f"trial {trial.number}: {error}") from None


def add_ood_columns(rows: list[dict[str, Any]], study: optuna.Study) -> list[dict[str, Any]]:
    """Add ``mce`` (mean corruption error, %) to the rows of trials that have an OOD result.

    Args:
        rows: rows with a ``number`` (as :func:`optnas.studies.trials.trial_row` gives).
        study: their study.
    """
    attrs = study.user_attrs
    for row in rows:
        result = attrs.get(f"{OOD_ATTR_PREFIX}{row['number']:05d}")
        if result is not None:
            row["mce"] = result["mce"]
    return rows


def describe_studies(storage_url: str) -> str:
    """Return a table of the studies in a storage.

    Args:
        storage_url: the storage URL.
    """
    storage = open_storage(storage_url)
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    if not summaries:
        return f"No studies in {mask_password(storage_url)}."
    lines = [f"{'study':40s} {'trials':>7s} {'complete':>9s}  objectives"]
    for summary in sorted(summaries, key=lambda s: s.study_name):
        study = optuna.load_study(study_name=summary.study_name, storage=storage,
                                  sampler=optuna.samplers.RandomSampler())
        complete = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        names = study.metric_names or [d.name.lower() for d in summary.directions]
        lines.append(f"{summary.study_name:40s} {summary.n_trials:7d} {complete:9d}  {', '.join(names)}")
    return "\n".join(lines)
