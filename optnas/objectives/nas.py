"""The Optuna objective of a search: one trial from parameters to stored values."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

from optnas import trial_attrs
from optnas.artifacts import SEARCH_CHECKPOINT, artifact_dir, save_checkpoint, trial_dir, write_architecture
from optnas.config import SearchConfig
from optnas.evaluation.candidate import CandidateEvaluator
from optnas.objectives.figures import constraint_values, objective_values
from optnas.objectives.robust import robust_stats
from optnas.optuna_private import set_legacy_constraints

logger = logging.getLogger(__name__)

BUDGET_POLL_SECONDS = 1.0


class NASObjective:
    """Evaluates the architecture a trial's parameters describe and records it in the study.

    An architecture that the study already evaluated is not evaluated again: the trial copies
    the earlier figures and names that trial in its ``duplicate_of`` user attribute.

    Args:
        config: the search configuration.
        evaluator: evaluates architectures.
        save_dir: the run folder; per-trial files go to ``trials/``, artifacts to ``artifacts/``.
    """

    def __init__(self, config: SearchConfig, evaluator: CandidateEvaluator, save_dir: str | Path) -> None:
        # What a trial reads of the configuration, read once.
        self._objectives = config.objectives
        self._budget = config.budget
        self._constraint_bounds = config.constraint_bounds
        self._save_ckpt = config.save_ckpt
        self._robust_options = ({"alpha": config.alpha, "n_doe": config.n_doe, "n_iter": config.n_iter}
                                if "top1_robust" in self._objectives else None)
        self.evaluator = evaluator
        self.space = evaluator.space
        self.save_dir = Path(save_dir)
        artifact_dir(self.save_dir).mkdir(parents=True, exist_ok=True)
        self.artifact_store = FileSystemArtifactStore(str(artifact_dir(self.save_dir)))
        self._evaluated: dict[str, optuna.trial.FrozenTrial] = {}
        self._seen_numbers: set[int] = set()
        self._lock = threading.Lock()

    def __call__(self, trial: optuna.Trial) -> list[float]:
        completed = self._wait_for_budget(trial)
        try:
            # Inside the try: a sampler that fails while proposing fails the trial with a reason.
            params = {
                name: suggest(trial, name, distribution)
                for name, distribution in self.space.distributions().items()
            }
            subnet = self.space.decode(params)
            trial.set_user_attr(trial_attrs.SUBNET, subnet)
            # The completed trials the budget check read: one storage read per trial, not two.
            # A duplicate finished since then is missed, as one still running always is.
            earlier = self._find_evaluated(completed, self.space.key(subnet))
            model = None
            if earlier is not None:
                stats = {key: earlier.user_attrs[key] for key in trial_attrs.STAT_KEYS if key in earlier.user_attrs}
                trial.set_user_attr(trial_attrs.DUPLICATE_OF, earlier.number)
            else:
                stats, model = self.evaluator.evaluate(subnet)
            if self._robust_options is not None:
                # Also for duplicates: α_norm is the current iteration's, not the earlier trial's.
                stats.update(robust_stats(trial.study, stats, self._pilot, **self._robust_options))
            self._record(trial, subnet, stats, model)
        except Exception as error:
            # The trial ends FAIL; its user attributes say why, for `optnas trials` and the dashboard.
            trial.set_user_attr(trial_attrs.FAIL_REASON, f"{type(error).__name__}: {error}")
            trial.set_user_attr(trial_attrs.FAIL_TRACEBACK, traceback.format_exc()[-4000:])
            raise
        return objective_values(stats, self._objectives)

    def _pilot(self) -> list[dict[str, Any]]:
        """Stats of the smallest and the largest architecture: the scale of iteration 0's α_norm."""
        subnets = (self.space.smallest(), self.space.largest())
        return [{trial_attrs.SUBNET: subnet, **self.evaluator.evaluate(subnet)[0]} for subnet in subnets]

    def _wait_for_budget(self, trial: optuna.Trial) -> list[optuna.trial.FrozenTrial]:
        """Prune this trial if the budget will be met without it; wait while that is undecided.

        Completed trials count toward the budget. While the completed trials plus the earlier
        ones still running would reach it, this trial waits: if they complete, it is pruned
        (PRUNED trials do not count), and if one fails, this trial goes ahead in its place.

        Returns:
            The completed trials of the study, as read for the decision.
        """
        budget = self._budget
        while True:
            trials = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
            completed = [t for t in trials if t.state == TrialState.COMPLETE]
            running_before = sum(t.state == TrialState.RUNNING and t.number < trial.number for t in trials)
            if len(completed) >= budget:
                raise optuna.TrialPruned(f"the budget of {budget} completed trials is spent")
            if len(completed) + running_before < budget:
                return completed
            optuna.storages.fail_stale_trials(trial.study)
            time.sleep(BUDGET_POLL_SECONDS)

    def _record(self, trial: optuna.Trial, subnet: dict, stats: dict[str, Any], model: Any) -> None:
        for key, value in stats.items():
            trial.set_user_attr(key, value)
        constraints = constraint_values(stats, self._constraint_bounds)
        for name, value in constraints.items():
            trial.set_constraint(name, value)
        if constraints:
            # Mirror the named constraints in the legacy list so optuna-dashboard, which reads
            # only that list, shows infeasible trials as infeasible.
            set_legacy_constraints(trial, list(constraints.values()))
        trial.set_user_attr(trial_attrs.FEASIBLE, all(value <= 0 for value in constraints.values()))
        self._save_files(trial, subnet, stats, model)

    def _save_files(self, trial: optuna.Trial, subnet: dict, stats: dict[str, Any], model: Any) -> None:
        folder = trial_dir(self.save_dir, trial.study.study_name, trial.number)
        paths = write_architecture(folder, subnet, stats)
        if model is not None and self._save_ckpt:
            paths.append(folder / SEARCH_CHECKPOINT)
            # The subnet as plain JSON values: checkpoints load with weights_only=True.
            save_checkpoint({"state_dict": model.state_dict(), "subnet": dict(subnet)}, paths[-1])
        for path in paths:
            mimetype = "application/octet-stream" if path.suffix == ".pth" else "application/json"
            upload_artifact(
                artifact_store=self.artifact_store,
                file_path=str(path),
                study_or_trial=trial,
                mimetype=mimetype,
            )

    def _find_evaluated(
        self, completed: list[optuna.trial.FrozenTrial], key: str
    ) -> optuna.trial.FrozenTrial | None:
        with self._lock:
            for frozen in completed:
                if frozen.number in self._seen_numbers:
                    continue
                self._seen_numbers.add(frozen.number)
                subnet = frozen.user_attrs.get(trial_attrs.SUBNET)
                if subnet is not None and trial_attrs.DUPLICATE_OF not in frozen.user_attrs:
                    self._evaluated.setdefault(self.space.key(subnet), frozen)
            return self._evaluated.get(key)


def suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    """Ask the trial for one gene with the public ``suggest_*`` API.

    Args:
        trial: the running trial.
        name: the gene.
        distribution: its distribution.
    """
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, list(distribution.choices))
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high, step=distribution.step)
    raise TypeError(f"unsupported distribution {distribution!r} for gene {name}")
