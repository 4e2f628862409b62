"""Running a search study until its budget of completed trials is spent."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from optnas.config import SearchConfig
from optnas.errors import OptionError
from optnas.evaluation.candidate import CandidateEvaluator
from optnas.figures import FIGURES
from optnas.networks.costs import tiny_ml
from optnas.objectives.nas import NASObjective
from optnas.pareto import hypervolume_2d
from optnas.studies.errors import SearchFailedError
from optnas.studies.quality import batch_quality
from optnas.trial_attrs import FAIL_REASON

ITERATION_ATTR_PREFIX = "iteration:"
# A search whose evaluations keep failing stops instead of burning the whole budget.
MAX_CONSECUTIVE_FAILURES = 5


def run_search(
    study: optuna.Study,
    config: SearchConfig,
    evaluator: CandidateEvaluator,
    *,
    progress: bool = True,
    n_jobs: int = 1,
) -> int:
    """Run trials until the study holds ``config.budget`` completed trials.

    Returns the number of completed trials at the end.

    Args:
        study: the study, with its sampler.
        config: the search configuration.
        evaluator: evaluates architectures.
        progress: show a progress bar.
        n_jobs: trials evaluated at once in this process (threads).
    """
    done = _n_complete(study)
    if done >= config.budget:
        return done
    # Data and supernet errors surface before any trial, and supernet training is not a trial's time.
    evaluator.prepare()
    objective = NASObjective(config, evaluator, config.save)
    recorder = IterationRecorder(config, evaluator)
    bar = tqdm(total=config.budget, initial=done, desc="trials", unit="trial", disable=not progress)
    failures: list[str] = []

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state == TrialState.FAIL:
            failures.append(trial.user_attrs.get(FAIL_REASON, "unknown error"))
            if len(failures) >= MAX_CONSECUTIVE_FAILURES:
                study.stop()
        elif trial.state == TrialState.COMPLETE:
            failures.clear()
        complete = _n_complete(study)
        bar.update(max(0, complete - bar.n))
        if trial.state == TrialState.COMPLETE:
            recorder.record(study)
        if complete >= config.budget:
            study.stop()

    try:
        study.optimize(
            objective, n_trials=None, n_jobs=n_jobs, callbacks=[after_trial], catch=(Exception,)
        )
    finally:
        bar.close()
    if len(failures) >= MAX_CONSECUTIVE_FAILURES:
        raise SearchFailedError(
            f"{len(failures)} evaluations failed in a row; the last one: {failures[-1]}"
        )
    return _n_complete(study)


class IterationRecorder:
    """Stores per-iteration figures in the study once each iteration's trials are complete.

    Iteration 0 is the initial design; iteration k ends with the ``n_doe + k * n_iter``-th
    completed trial. Its record is computed from exactly that many trials, the first to
    complete (by completion time, then number), so it is the same whoever writes it and
    however far the count has moved on. ``seconds`` is its wall time: from the previous
    iteration's last completion (iteration 0: the first start) to its own. The hypervolume is
    that of the feasible front in (top1 error %, second objective), normalised by the area of
    the fixed reference point (100 % error, 1.1 × the second objective of the largest
    architecture), so iterations and studies of one space are comparable.

    Args:
        config: the search configuration.
        evaluator: used for the exact costs of the largest architecture.
    """

    def __init__(self, config: SearchConfig, evaluator: CandidateEvaluator) -> None:
        self.config = config
        self.evaluator = evaluator
        self._reference: tuple[float, float] | None = None

    def reference_point(self) -> tuple[float, float]:
        """Return the hypervolume reference point (top1 error %, second objective), by the
        second objective's reference rule (:attr:`optnas.figures.Figure.reference`)."""
        if self._reference is None:
            config = self.config
            figure = FIGURES[config.sec_obj]
            if not isinstance(figure.reference, str):
                self._reference = (100.0, figure.reference)
                return self._reference
            subnet = self.evaluator.space.largest()
            largest = self.evaluator.costs(subnet)
            if figure.reference == "unpenalised":
                # With early exits the most an image costs is leaving at the last exit.
                second = tiny_ml(
                    largest["params"], largest.get("exit_macs", [largest["macs"]])[-1], largest["activations"],
                    pmax=None, mmax=None, amax=None,
                    wp=config.wp, wm=config.wm, wa=config.wa, penalty=config.penalty,
                )
            elif figure.reference == "last_exit":
                second = largest[figure.per_exit][-1]
            else:
                if figure.name not in largest:
                    # Measured latency: the largest network is timed once.
                    largest.update(self.evaluator.measured_latency(subnet))
                second = largest[figure.name]
            self._reference = (100.0, 1.1 * second)
        return self._reference

    def record(self, study: optuna.Study) -> None:
        """Store the figures of every iteration the completed trials close that has none yet.

        Several iterations at once when the count jumped past their ends (threads, workers).

        Args:
            study: the study.
        """
        config = self.config
        trials = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                        key=lambda t: (t.datetime_complete, t.number))
        stored = study.user_attrs
        iteration, end = 0, config.n_doe
        while end <= len(trials):
            key = f"{ITERATION_ATTR_PREFIX}{iteration:04d}"
            if key not in stored:
                study.set_user_attr(key, self._figures(study, trials[:end], iteration))
            iteration, end = iteration + 1, end + config.n_iter

    def _figures(self, study: optuna.Study, trials: list[FrozenTrial], iteration: int) -> dict[str, Any]:
        """The record of ``iteration`` from its completed trials, in completion order."""
        config = self.config
        previous = trials[:-config.n_iter] if iteration else []
        since = previous[-1].datetime_complete if previous else min(t.datetime_start for t in trials)
        feasible = [t for t in trials if all(v <= 0 for v in t.constraints.values())]
        figures: dict[str, Any] = {
            "iteration": iteration,
            "n_complete": len(trials),
            "n_feasible": len(feasible),
            "seconds": round((trials[-1].datetime_complete - since).total_seconds(), 3),
        }
        if feasible:
            figures["best_top1"] = max(t.user_attrs["top1"] for t in feasible)
        if config.sampler == "surrogate":
            quality = batch_quality(study, trials).get(iteration)
            if quality is not None:
                figures["predictor"] = quality
        if config.sec_obj != "none":
            reference = self.reference_point()
            # top1 becomes its error; top1_robust is already minimised, on the same 0-100 scale.
            first = [100.0 - t.values[0] if config.first_obj == "top1" else t.values[0] for t in feasible]
            points = np.array([[f, t.values[1]] for f, t in zip(first, feasible)]).reshape(-1, 2)
            area = hypervolume_2d(points, reference)
            figures["hv"] = area / (reference[0] * reference[1])
            figures["hv_reference_point"] = list(reference)
        return figures


def _n_complete(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def prepare_save_dir(save: str | Path) -> Path:
    """Create the run folder, with a clear error when it cannot be written.

    Args:
        save: the folder.
    """
    path = Path(save)
    try:
        path.mkdir(parents=True, exist_ok=True)
        # A probe of this process's own: workers starting together share the folder.
        with tempfile.NamedTemporaryFile(dir=path, prefix=".optnas-write-test-"):
            pass
    except OSError as error:
        raise OptionError("{save} {path}: cannot write there ({reason})", path=path, reason=error.strerror) from None
    return path

