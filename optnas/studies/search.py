"""The search workflows behind ``optnas search``, ``resume`` and ``worker``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import optuna

from optnas.boards import BOARDS
from optnas.config import SearchConfig
from optnas.evaluation.candidate import CandidateEvaluator
from optnas.evaluation.costs import check_board_fits, check_constraints_satisfiable, check_latency_table
from optnas.studies.runner import prepare_save_dir, run_search
from optnas.studies.storage import mask_password
from optnas.studies.study import create_search_study, ensure_new_study_name, resume_search_study
from optnas.studies.trials import format_rows, pareto_trials, trial_row
from optnas.training.distributed import launched_ranks

logger = logging.getLogger(__name__)


def start_search(
    config: SearchConfig,
    storage_url: str,
    study_name: str | None = None,
    *,
    echo: Callable[[str], None] = logger.info,
    progress: bool = True,
    n_jobs: int = 1,
    create_only: bool = False,
) -> optuna.Study | None:
    """Create a study for ``config`` and run it to its budget.

    Under ``torchrun`` every process trains the supernet (when there is one to train on the
    spot), then all but the first return None: the first creates the study and runs it.

    Args:
        config: the validated configuration.
        storage_url: the storage URL.
        study_name: the study name (default: derived from the configuration).
        echo: where messages go.
        progress: show progress bars.
        n_jobs: trials evaluated at once in this process.
        create_only: store the study after checking the options and the data, run nothing.
    """
    costs = config.cost_options()
    if config.board is not None:
        check_board_fits(costs, BOARDS[config.board])
    check_constraints_satisfiable(costs, config.constraint_bounds)
    check_latency_table(costs, config.lmax)
    # Bad data folders and supernet checkpoints fail here, before anything is written: a
    # refused search leaves no database file and no run folder behind.
    evaluator = CandidateEvaluator(config, config.save, echo=echo, progress=progress)
    evaluator.prepare(with_supernet=config.supernet_path is not None)
    name = study_name or config.default_study_name()
    # Under torchrun only the first process opens the storage: two creating a new SQLite file's
    # tables at once collide. Should it refuse the name, torchrun stops the others.
    if launched_ranks().main:
        ensure_new_study_name(storage_url, name)
    prepare_save_dir(config.save)
    if not create_only:
        # A supernet trained on the spot is written to the run folder.
        evaluator.prepare()
    if not launched_ranks().main:
        return None
    study = create_search_study(config, storage_url, name)
    echo(f"Study '{study.study_name}' in {mask_password(storage_url)}: budget {config.budget} trials")
    if create_only:
        echo(f"Created; run workers with: optnas worker --study-name {name} --storage {mask_password(storage_url)}")
        return study
    _run_and_report(study, config, evaluator, storage_url, echo, progress, n_jobs)
    return study


def continue_search(
    storage_url: str,
    study_name: str,
    overrides: dict[str, Any],
    *,
    echo: Callable[[str], None] = logger.info,
    progress: bool = True,
    n_jobs: int = 1,
) -> optuna.Study | None:
    """Resume a study from its stored configuration and run it to its (new) budget.

    Under ``torchrun`` every process trains the supernet (when there is one to train on the
    spot), then all but the first return None and the first runs the trials.

    Args:
        storage_url: the storage URL.
        study_name: the study.
        overrides: options given on the command line (see :func:`resume_search_study`).
        echo: where messages go.
        progress: show progress bars.
        n_jobs: trials evaluated at once in this process.
    """
    if "save" in overrides:
        prepare_save_dir(overrides["save"])
    study, config = resume_search_study(storage_url, study_name, overrides)
    # A worker on another machine, or a table moved since: refused before any trial fails on it.
    check_latency_table(config.cost_options(), config.lmax)
    evaluator = CandidateEvaluator(config, prepare_save_dir(config.save), echo=echo, progress=progress)
    if launched_ranks().distributed:
        evaluator.prepare()
        if not launched_ranks().main:
            return None
    echo(f"Resuming '{study_name}': budget {config.budget} trials")
    _run_and_report(study, config, evaluator, storage_url, echo, progress, n_jobs)
    return study


def _run_and_report(study, config, evaluator, storage_url, echo, progress, n_jobs) -> None:  # noqa: ANN001
    complete = run_search(study, config, evaluator, progress=progress, n_jobs=n_jobs)
    best = pareto_trials(study)
    echo(f"{complete} completed trials; feasible Pareto set ({len(best)}):")
    echo(format_rows([trial_row(trial) for trial in best], "table"))
    echo(f"Inspect it: optnas dashboard --storage {mask_password(storage_url)}")
