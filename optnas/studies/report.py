"""The report of a study (``optnas report``): PNG plots, an HTML page, study artifacts.

Plots: the Pareto front with the chosen architectures marked, the hypervolume and the
predictor's Kendall τ per iteration (from the study attributes ``iteration:NNNN``), and the
exit ratios of early-exit architectures when trials hold ``exit_ratios``. Each plot is also
uploaded as a study artifact so that optuna-dashboard shows it.
"""

from __future__ import annotations

import hashlib
import html
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or wanted

import matplotlib.pyplot as plt
import optuna
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState

from optnas.errors import OptionError
from optnas.figures import FIGURES
from optnas.optuna_private import study_storage
from optnas.studies.runner import ITERATION_ATTR_PREFIX
from optnas.studies.selection import select_trials, stats_of
from optnas.studies.study import ARTIFACT_DIR_ATTR
from optnas.studies.trials import pareto_trials
from optnas.trial_attrs import DUPLICATE_OF, SUBNET

PAGE = "index.html"


def iteration_figures(study: optuna.Study) -> list[dict[str, Any]]:
    """Return the per-iteration figures the search stored, by iteration.

    Args:
        study: the study.
    """
    figures = [value for key, value in study.user_attrs.items() if key.startswith(ITERATION_ATTR_PREFIX)]
    return sorted(figures, key=lambda figure: figure["iteration"])


def write_report(
    study: optuna.Study,
    out_dir: str | Path,
    *,
    n: int = 3,
    prefer: str = "trade-off",
    upload: bool = True,
) -> dict[str, Any]:
    """Write the plots and ``index.html`` of a study to a folder, and attach the plots to it.

    Args:
        study: the study (two objectives for the Pareto plot; one gives top1 per trial).
        out_dir: the folder to write.
        n: architectures to choose and mark, as ``optnas select -n``.
        prefer: how the others are chosen, as ``optnas select --prefer``.
        upload: attach each plot to the study as an artifact (in the study's ``artifact_dir``).

    Returns:
        ``plots`` (file names), ``page`` (the HTML file), ``chosen`` (trial numbers),
        ``uploaded`` (file names attached now; identical ones attached earlier are skipped).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if DUPLICATE_OF not in t.user_attrs]
    if not complete:
        raise ValueError(f"study '{study.study_name}' has no completed trial to report on")
    chosen = select_trials(study, n, prefer)
    names = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
    plots = [_plot_front(study, complete, chosen, names, out / "pareto.png")]
    iterations = iteration_figures(study)
    if any("hv" in figure for figure in iterations):
        plots.append(_plot_series(iterations, "hv", "hypervolume (normalised)", out / "hypervolume.png"))
    if any("predictor" in figure for figure in iterations):
        plots.append(_plot_series(iterations, "predictor", "Kendall τ of the predictor on the batch",
                                  out / "predictor_tau.png"))
    early_exit = [t for t in pareto_trials(study) if "exit_ratios" in t.user_attrs]
    if early_exit:
        plots.append(_plot_exit_ratios(early_exit, out / "exit_ratios.png"))
    rows = [{"trial": trial.number, "reason": reason, **stats_of(trial),
             SUBNET: trial.user_attrs.get(SUBNET)} for trial, reason in chosen]
    page = out / PAGE
    page.write_text(_page(study, plots, rows, iterations))
    uploaded = _upload(study, [out / name for name in plots]) if upload else []
    return {"plots": plots, "page": str(page), "chosen": [trial.number for trial, _ in chosen],
            "uploaded": uploaded}


def _label(name: str) -> str:
    figure = FIGURES.get(name)
    unit = figure.unit if figure is not None else None
    return f"{name} ({unit})" if unit else name


def _plot_front(study: optuna.Study, complete: list[FrozenTrial], chosen: list[tuple[FrozenTrial, str]],
                names: list[str], path: Path) -> str:
    is_feasible = [all(v <= 0 for v in t.constraints.values()) for t in complete]
    feasible = [t for t, ok in zip(complete, is_feasible) if ok]
    infeasible = [t for t, ok in zip(complete, is_feasible) if not ok]
    front = sorted(pareto_trials(study), key=lambda t: t.values[-1])
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    if len(names) >= 2:
        def x(t: FrozenTrial) -> float:
            return t.values[1]
        ax.set_xlabel(_label(names[1]))
        ax.set_title(f"{study.study_name}: feasible Pareto front")
    else:
        def x(t: FrozenTrial) -> float:
            return t.number
        ax.set_xlabel("trial")
        ax.set_title(f"{study.study_name}: {names[0]} per trial")
    ax.scatter([x(t) for t in feasible], [t.values[0] for t in feasible], s=18, c="0.6", label="feasible")
    if infeasible:
        ax.scatter([x(t) for t in infeasible], [t.values[0] for t in infeasible], s=18, marker="x",
                   c="tab:red", alpha=0.6, label="infeasible")
    if len(names) >= 2 and front:
        ax.step([x(t) for t in front], [t.values[0] for t in front], where="post", c="tab:blue",
                lw=1.2, marker="o", ms=4, label="Pareto front")
    ax.scatter([x(t) for t, _ in chosen], [t.values[0] for t, _ in chosen], s=140, marker="*", c="tab:orange",
               edgecolors="k", linewidths=0.6, zorder=5, label="chosen")
    for trial, _ in chosen:
        ax.annotate(f"#{trial.number}", (x(trial), trial.values[0]), textcoords="offset points", xytext=(6, -10),
                    fontsize=8)
    ax.set_ylabel(_label(names[0]))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path.name


def _plot_series(iterations: list[dict[str, Any]], key: str, label: str, path: Path) -> str:
    points = [(f["iteration"], f[key]["kendall_tau"] if key == "predictor" else f[key])
              for f in iterations if key in f]
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", c="tab:blue")
    ax.set_xlabel("iteration (0: initial design)")
    ax.set_ylabel(label)
    ax.set_xticks([p[0] for p in points])
    if key == "predictor":
        ax.set_ylim(-1.05, 1.05)
        ax.axhline(0, c="0.5", lw=0.8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path.name


def _plot_exit_ratios(trials: list[FrozenTrial], path: Path) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
    labels = [f"#{t.number}" for t in trials]
    bottom = [0.0] * len(trials)
    n_exits = max(len(t.user_attrs["exit_ratios"]) for t in trials)
    for exit_index in range(n_exits):
        share = [float(t.user_attrs["exit_ratios"][exit_index]) if exit_index < len(t.user_attrs["exit_ratios"])
                 else 0.0 for t in trials]
        ax.bar(labels, share, bottom=bottom, label=f"exit {exit_index + 1}")
        bottom = [b + s for b, s in zip(bottom, share)]
    ax.set_xlabel("Pareto-optimal trial")
    ax.set_ylabel("share of validation images")
    ax.set_ylim(0, 1.0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path.name


def _page(study: optuna.Study, plots: list[str], rows: list[dict[str, Any]],
          iterations: list[dict[str, Any]]) -> str:
    columns = ("trial", "reason", *(key for key in rows[0] if key not in ("trial", "reason", SUBNET)))
    header = "".join(f"<th>{html.escape(c)}</th>" for c in (*columns, SUBNET))
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(row.get(c)))}</td>" for c in columns)
        + f"<td><code>{html.escape(json.dumps(row.get(SUBNET)))}</code></td></tr>"
        for row in rows
    )
    n_complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    last = iterations[-1] if iterations else {}
    summary = f"{n_complete} completed trials, {len(iterations)} iterations recorded"
    if "hv" in last:
        summary += f", final hypervolume {last['hv']:.4f}"
    images = "".join(f'<figure><img src="{html.escape(p)}" alt="{html.escape(p)}"></figure>' for p in plots)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>optnas report: {html.escape(study.study_name)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}code{{font-size:75%}}img{{max-width:100%}}</style>
</head><body>
<h1>optnas report: {html.escape(study.study_name)}</h1>
<p>{html.escape(summary)}. Objectives: {html.escape(", ".join(study.metric_names or []))}.</p>
<h2>Chosen architectures</h2>
<table><tr>{header}</tr>{body}</table>
<h2>Plots</h2>
{images}
</body></html>
"""


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _upload(study: optuna.Study, files: list[Path]) -> list[str]:
    artifact_dir = study.user_attrs.get(ARTIFACT_DIR_ATTR)
    if artifact_dir is None:
        raise OptionError("study '{study}' has no '{attribute}' attribute; use {no_upload}", study=study.study_name,
                          attribute=ARTIFACT_DIR_ATTR)
    Path(artifact_dir).mkdir(parents=True, exist_ok=True)
    store = FileSystemArtifactStore(artifact_dir)
    # Reports are rerun: a plot identical to one already attached is not attached twice.
    attached = {(meta.filename, _digest_of_artifact(store, meta.artifact_id))
                for meta in get_all_artifact_meta(study, storage=study_storage(study))}
    uploaded = []
    for path in files:
        if (path.name, hashlib.sha256(path.read_bytes()).hexdigest()) in attached:
            continue
        upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=study, mimetype="image/png")
        uploaded.append(path.name)
    return uploaded


def _digest_of_artifact(store: FileSystemArtifactStore, artifact_id: str) -> str | None:
    try:
        with store.open_reader(artifact_id) as reader:
            return hashlib.sha256(reader.read()).hexdigest()
    except ArtifactNotFound:  # an artifact whose file is gone is simply not a duplicate
        return None
