"""The Optuna objective of a search: one trial from parameters to stored values."""

from __future__ import annotations

import json
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

from optnas.config import SearchConfig
from optnas.evaluation import CandidateEvaluator
from optnas.objectives.figures import constraint_values, objective_values
from optnas.objectives.robust import robust_stats

logger = logging.getLogger(__name__)

# Stats stored as user attributes of every trial, besides the subnet.
STAT_KEYS = ("top1", "params", "macs", "activations", "peak_activations", "tiny_ml", "robustness",
             "top1_robust", "alpha_norm", "avg_macs", "exit_ratios", "exit_top1", "exit_macs", "epsilon")
BUDGET_POLL_SECONDS = 1.0
# Optuna's legacy constraints attribute: optuna-dashboard 0.21 reads only this one.
LEGACY_CONSTRAINTS_KEY = "constraints"


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
        self.config = config
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
            trial.set_user_attr("subnet", subnet)
            # The completed trials the budget check read: one storage read per trial, not two.
            # A duplicate finished since then is missed, as one still running always is.
            earlier = self._find_evaluated(completed, self.space.key(subnet))
            model = None
            if earlier is not None:
                stats = {key: earlier.user_attrs[key] for key in STAT_KEYS if key in earlier.user_attrs}
                trial.set_user_attr("duplicate_of", earlier.number)
            else:
                stats, model = self.evaluator.evaluate(subnet)
            if "top1_robust" in self.config.objectives:
                # Also for duplicates: α_norm is the current iteration's, not the earlier trial's.
                stats.update(robust_stats(trial.study, self.config, stats, self._pilot))
            self._record(trial, subnet, stats, model)
        except Exception as error:
            # The trial ends FAIL; its user attributes say why, for `optnas trials` and the dashboard.
            trial.set_user_attr("fail_reason", f"{type(error).__name__}: {error}")
            trial.set_user_attr("fail_traceback", traceback.format_exc()[-4000:])
            raise
        return objective_values(stats, self.config.objectives)

    def _pilot(self) -> list[dict[str, Any]]:
        """Stats of the smallest and the largest architecture: the scale of iteration 0's α_norm."""
        subnets = (self.space.smallest(), self.space.largest())
        return [{"subnet": subnet, **self.evaluator.evaluate(subnet)[0]} for subnet in subnets]

    def _wait_for_budget(self, trial: optuna.Trial) -> list[optuna.trial.FrozenTrial]:
        """Prune this trial if the budget will be met without it; wait while that is undecided.

        Completed trials count toward the budget. While the completed trials plus the earlier
        ones still running would reach it, this trial waits: if they complete, it is pruned
        (PRUNED trials do not count), and if one fails, this trial goes ahead in its place.

        Returns:
            The completed trials of the study, as read for the decision.
        """
        budget = self.config.budget
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
        constraints = constraint_values(stats, self.config.constraint_bounds)
        for name, value in constraints.items():
            trial.set_constraint(name, value)
        if constraints:
            # Mirror the named constraints in the legacy list so optuna-dashboard, which reads
            # only that list, shows infeasible trials as infeasible.
            trial.study._storage.set_trial_system_attr(
                trial._trial_id, LEGACY_CONSTRAINTS_KEY, list(constraints.values())
            )
        trial.set_user_attr("feasible", all(value <= 0 for value in constraints.values()))
        self._save_files(trial, subnet, stats, model)

    def _save_files(self, trial: optuna.Trial, subnet: dict, stats: dict[str, Any], model: Any) -> None:
        folder = trial_dir(self.save_dir, trial.study.study_name, trial.number)
        folder.mkdir(parents=True, exist_ok=True)
        files = {"net.subnet": subnet, "net.stats": stats}
        for name, content in files.items():
            (folder / name).write_text(json.dumps(content, indent=2) + "\n")
        if model is not None and self.config.save_ckpt:
            import torch

            torch.save({"state_dict": model.state_dict(), "subnet": subnet}, folder / "ckpt.pth")
            files["ckpt.pth"] = None
        for name in files:
            mimetype = "application/octet-stream" if name.endswith(".pth") else "application/json"
            upload_artifact(
                artifact_store=self.artifact_store,
                file_path=str(folder / name),
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
                subnet = frozen.user_attrs.get("subnet")
                if subnet is not None and "duplicate_of" not in frozen.user_attrs:
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


def artifact_dir(save_dir: str | Path) -> Path:
    """Return the artifact store folder of a run folder.

    Args:
        save_dir: the run folder (``--save``).
    """
    return Path(save_dir) / "artifacts"


def trial_dir(save_dir: str | Path, study_name: str, number: int) -> Path:
    """Return the folder of one trial's files.

    Args:
        save_dir: the run folder (``--save``).
        study_name: the study.
        number: the trial number.
    """
    return Path(save_dir) / study_name / f"trial-{number:05d}"
