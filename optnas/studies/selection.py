"""Choosing architectures from a finished study (``optnas select``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.artifacts import (
    FileSystemArtifactStore,
    download_artifact,
    get_all_artifact_meta,
)
from optuna.trial import FrozenTrial

from optnas.artifacts import (
    SEARCH_CHECKPOINT,
    SOURCE_FILE,
    write_architecture,
    write_json,
)
from optnas.config import PREFERENCES, SearchConfig
from optnas.errors import OptionError
from optnas.evaluation.candidate import CandidateEvaluator
from optnas.figures import MEASURED_LATENCY
from optnas.optuna_private import study_storage
from optnas.studies.study import ARTIFACT_DIR_ATTR, CLASSES_ATTR, CONFIG_ATTR
from optnas.studies.trials import pareto_trials, trial_subnet
from optnas.trial_attrs import STAT_KEYS, SUBNET


def stats_of(trial: FrozenTrial) -> dict[str, Any]:
    """Return the figures a trial stored, in the order of ``net.stats``.

    Args:
        trial: a completed trial.
    """
    return {key: trial.user_attrs[key] for key in STAT_KEYS if key in trial.user_attrs}


def trade_offs(values: np.ndarray) -> np.ndarray:
    """Return the trade-off of every point of a front (higher: a better compromise).

    Objectives are minimised and first normalised to [0, 1] over the front, so that units do
    not decide. The trade-off of point i against j is what i gains over j divided by what it
    loses, ``Σ max(0, f_j − f_i) / Σ max(0, f_i − f_j)``; a point's trade-off is its smallest
    over the other points: a knee of the front gives up little for much.

    Args:
        values: array (n, m) of a non-dominated set, minimised.
    """
    values = np.asarray(values, dtype=float)
    span = values.max(axis=0) - values.min(axis=0)
    normalised = (values - values.min(axis=0)) / np.where(span > 0, span, 1.0)
    difference = normalised[None, :, :] - normalised[:, None, :]  # [i, j] = f_j - f_i
    gain = np.clip(difference, 0, None).sum(axis=2)
    loss = np.clip(-difference, 0, None).sum(axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(loss > 0, gain / np.where(loss > 0, loss, 1.0), np.inf)
    np.fill_diagonal(ratio, np.inf)
    return ratio.min(axis=1)


def select_trials(
    study: optuna.Study, n: int, prefer: str, exits: int | None = None
) -> list[tuple[FrozenTrial, str]]:
    """Return up to ``n`` trials of the feasible Pareto set, each with why it was chosen.

    The most accurate architecture always comes first; then, for a named objective, the ones
    lowest in it, or for ``trade-off`` the best compromises on the normalised objectives.

    Args:
        study: the study.
        n: how many architectures.
        prefer: a stat name of :data:`PREFERENCES` (all of them minimised).
        exits: keep only architectures with this many early exits (None: all).
    """
    if prefer not in PREFERENCES:
        raise OptionError("{prefer} must be one of {preferences}, got {value!r}", preferences=list(PREFERENCES),
                          value=prefer)
    if n < 1:
        raise OptionError("{n} must be at least 1, got {value}", value=n)
    if exits is not None and exits < 0:
        raise OptionError("{exits} must be zero or more, got {value}", value=exits)
    front = pareto_trials(study)
    if exits is not None:
        front = [t for t in front if (subnet := trial_subnet(t)) is not None and subnet.n_exits == exits]
    if not front:
        which = "" if exits is None else f" with {exits} early exits"
        raise ValueError(f"study '{study.study_name}' has no feasible Pareto-optimal trial{which} to select from")
    best = max(front, key=lambda t: (t.user_attrs["top1"], -t.number))
    chosen = [(best, "most accurate")]
    others = [t for t in front if t.number != best.number]
    if prefer == "trade-off":
        if others:
            directions = study.directions
            signs = np.array([-1.0 if d == optuna.study.StudyDirection.MAXIMIZE else 1.0 for d in directions])
            scores = trade_offs(np.array([t.values for t in front]) * signs)
            by_score = {t.number: s for t, s in zip(front, scores)}
            others.sort(key=lambda t: (-by_score[t.number], t.number))
    else:
        missing = [t.number for t in others if prefer not in t.user_attrs]
        if missing:
            raise ValueError(f"trials {missing[:5]} have no '{prefer}' figure")
        others.sort(key=lambda t: (t.user_attrs[prefer], t.number))
    chosen += [(t, f"{prefer} rank {rank}") for rank, t in enumerate(others[: n - 1], start=1)]
    return chosen


def export_selection(
    study: optuna.Study, chosen: list[tuple[FrozenTrial, str]], prefer: str, save: str | Path,
    csv_path: str | Path | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Write one folder per choice (``net.subnet``, ``net.stats``, ``ckpt.pth`` if kept) and a CSV.

    Returns the rows of the CSV and, for a search bounded by ``--lmax``, how many chosen
    networks meet the bound when timed here (:func:`measure_latency_bound`).

    Args:
        study: the study.
        chosen: from :func:`select_trials`.
        prefer: the preference, used in folder names.
        save: the output folder.
        csv_path: where to write the CSV (default: ``save/selection.csv``).
    """
    save = Path(save)
    save.mkdir(parents=True, exist_ok=True)
    artifact_dir = study.user_attrs.get(ARTIFACT_DIR_ATTR)
    store = FileSystemArtifactStore(artifact_dir) if artifact_dir and Path(artifact_dir).is_dir() else None
    source = _source(study)
    rows = []
    for rank, (trial, reason) in enumerate(chosen):
        folder = save / f"net-{prefer}_{rank}"
        stats = stats_of(trial)
        write_architecture(folder, trial_subnet(trial), stats)
        write_json(folder / SOURCE_FILE, {**source, "trial": trial.number})
        if store is not None:
            for meta in get_all_artifact_meta(trial, storage=study_storage(study)):
                if meta.filename == SEARCH_CHECKPOINT:
                    download_artifact(artifact_store=store, file_path=str(folder / SEARCH_CHECKPOINT),
                                      artifact_id=meta.artifact_id)
        rows.append({"folder": folder.name, "trial": trial.number, "reason": reason, **stats,
                     SUBNET: trial.user_attrs[SUBNET]})
    latency_check = measure_latency_bound(study, rows)
    present = [key for key in (*STAT_KEYS, MEASURED_LATENCY) if any(key in row for row in rows)]
    columns = ["folder", "trial", "reason", *present, SUBNET]
    with open(csv_path or save / "selection.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(
            {key: json.dumps(value) if isinstance(value, (dict, list)) else value for key, value in row.items()}
            for row in rows
        )
    return rows, latency_check


def measure_latency_bound(study: optuna.Study, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Time each chosen network of a search bounded by ``--lmax``, as the search would have measured it.

    Adds ``measured_latency`` (ms, median) to each row. Latencies a table predicted are thereby
    checked on this machine; tables of other devices are checked there (see the README).

    Args:
        study: the study.
        rows: the chosen architectures, each with its ``subnet``.

    Returns:
        ``bound``, ``met`` (how many measured at or under it), ``n``, ``runtime`` and ``threads``;
        None when the search has no latency bound or its latency is a table column (nasbench201).
    """
    values = study.user_attrs.get(CONFIG_ATTR)
    config = SearchConfig.from_dict(values) if values is not None else None
    if config is None or config.lmax is None or not config.space_class.trains_networks or not rows:
        return None
    from optnas.latency.measure import Measurer

    measurer = Measurer(config.class_count(), runtime=config.latency_runtime, threads=config.latency_threads)
    for row in rows:
        row[MEASURED_LATENCY] = measurer.measure(row[SUBNET])["latency_ms"]
    met = sum(row[MEASURED_LATENCY] <= config.lmax for row in rows)
    return {"bound": config.lmax, "met": met, "n": len(rows), "runtime": config.latency_runtime,
            "threads": config.latency_threads}


def _source(study: optuna.Study) -> dict[str, Any]:
    """Where the choices come from: the study, its configuration and its supernet file.

    ``optnas train`` reads it to inherit weights and hold out the search's validation images.
    """
    source: dict[str, Any] = {"study": study.study_name}
    values = study.user_attrs.get(CONFIG_ATTR)
    if values is None:
        return source
    source["config"] = values
    if CLASSES_ATTR in study.user_attrs:
        source["classes"] = study.user_attrs[CLASSES_ATTR]
    config = SearchConfig.from_dict(values)
    artifact_dir = study.user_attrs.get(ARTIFACT_DIR_ATTR)
    if config.supernet_path is not None:
        source["supernet"] = str(Path(config.supernet_path).resolve())
    elif artifact_dir is not None:
        # The search kept the supernet it trained next to its artifact folder.
        trained = CandidateEvaluator(config, Path(artifact_dir).parent).supernet_file()
        if trained.is_file():
            source["supernet"] = str(trained)
    return source
