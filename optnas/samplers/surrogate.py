"""The surrogate-assisted NSGA-II sampler: the MSuNAS step inside Optuna.

Trials are mapped to candidates by trial number, which the storage hands out atomically:
numbers ``0 .. n_doe-1`` take the initial design, and numbers
``n_doe + (k-1)·n_iter + i`` take candidate ``i`` of batch ``k``. Batch ``k`` is computed
from exactly the trials numbered below its first number, once they have all finished, so
every worker, thread or process, computes the same batch and takes a different candidate of
it: no locks, no duplicates, and a late worker simply gets the next number. The batch is also
stored in the study's user attributes, where later readers take it as it was.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from optnas.samplers.design import initial_design
from optnas.samplers.msunas import Evaluated, MSuNASStep
from optnas.spaces import SearchSpace
from optnas.trial_attrs import DUPLICATE_OF, SUBNET

BATCH_ATTR_PREFIX = "surrogate:batch:"
_FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


class SurrogateSampler(BaseSampler):
    """Proposes the initial design, then the batches of :class:`MSuNASStep`, trial by trial.

    Args:
        space: the search space.
        costs: exact figures of a subnet, no network run.
        objectives, constraint_bounds, predictor, sec_predictor, trust_radius, population_size,
            generations: the step's (see :class:`MSuNASStep`).
        n_doe: trials of the initial design.
        n_iter: candidates per batch.
        seed: seed of the design, the predictors and the evolution.
        poll_seconds: how often a trial waiting for the previous batch checks again.
    """

    def __init__(
        self,
        space: SearchSpace,
        costs: Callable[[dict[str, Any]], dict[str, float]],
        *,
        objectives: list[str],
        constraint_bounds: dict[str, float],
        n_doe: int,
        n_iter: int,
        predictor: str = "as",
        sec_predictor: str = "as",
        trust_radius: int | None = None,
        seed: int = 0,
        population_size: int = 100,
        generations: int = 30,
        poll_seconds: float = 1.0,
    ) -> None:
        self.space = space
        self.step = MSuNASStep(
            space, costs, objectives=objectives, constraint_bounds=constraint_bounds,
            predictor=predictor, sec_predictor=sec_predictor, trust_radius=trust_radius,
            population_size=population_size, generations=generations,
        )
        self.n_doe = n_doe
        self.n_iter = n_iter
        self.seed = seed
        self.poll_seconds = poll_seconds
        self._fallback = RandomSampler(seed=seed)
        self._design: np.ndarray | None = None
        self._batches: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        # The full, fixed encoding, so that even trial 0 is proposed by this sampler.
        return self.space.distributions()

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        vector = self.candidate(study, trial.number)
        if vector is None:
            return {}
        return self.space.encode(self.space.from_vector(vector))

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def reseed_rng(self) -> None:
        self._fallback.reseed_rng()

    def candidate(self, study: Study, number: int) -> np.ndarray | None:
        """Return the gene vector trial ``number`` evaluates (None: the space is exhausted).

        Args:
            study: the study.
            number: the trial number.
        """
        if number < self.n_doe:
            if self._design is None:
                self._design = initial_design(self.space, self.n_doe, self.seed)
            return self._design[number] if number < len(self._design) else None
        batch_index, position = divmod(number - self.n_doe, self.n_iter)
        batch = self.batch(study, batch_index + 1)
        vectors = batch["vectors"]
        return np.asarray(vectors[position]) if position < len(vectors) else None

    def batch(self, study: Study, k: int) -> dict[str, Any]:
        """Return batch ``k`` (k ≥ 1): stored, cached, or computed once its inputs are final.

        Args:
            study: the study.
            k: the batch index.
        """
        with self._lock:
            if k in self._batches:
                return self._batches[k]
        stored = study.user_attrs.get(f"{BATCH_ATTR_PREFIX}{k:04d}")
        if stored is None:
            first_number = self.n_doe + (k - 1) * self.n_iter
            history = self._wait_for_history(study, first_number)
            stored = self._propose(history, k)
            study.set_user_attr(f"{BATCH_ATTR_PREFIX}{k:04d}", stored)
        batch = {**stored, "vectors": [self.space.to_vector(s) for s in stored["subnets"]]}
        with self._lock:
            self._batches[k] = batch
        return batch

    def _wait_for_history(self, study: Study, first_number: int) -> list[FrozenTrial]:
        while True:
            earlier = [t for t in study.get_trials(deepcopy=False) if t.number < first_number]
            if all(t.state in _FINISHED for t in earlier):
                return [t for t in earlier if t.state == TrialState.COMPLETE and SUBNET in t.user_attrs]
            # Dead workers' trials would block us forever: fail them once their heartbeat is stale.
            optuna.storages.fail_stale_trials(study)
            time.sleep(self.poll_seconds)

    def _propose(self, history: list[FrozenTrial], k: int) -> dict[str, Any]:
        """Run the step on the completed trials and return the batch as the study stores it."""
        evaluated = [t for t in history if DUPLICATE_OF not in t.user_attrs]
        proposal = self.step(Evaluated(
            vectors=self._vectors(evaluated),
            observed={
                name: np.array([float(t.user_attrs.get(name, np.nan)) for t in evaluated])
                for name in self.step.quantities
            },
            feasible=np.array([all(v <= 0 for v in t.constraints.values()) for t in evaluated], dtype=bool),
            seen=self._vectors(history),
        ), self.n_iter, self.seed, k)
        return {
            "iteration": k,
            "subnets": [self.space.from_vector(vector) for vector in proposal.vectors],
            "predicted": {name: [float(v) for v in values] for name, values in proposal.predicted.items()},
            "predictors": proposal.predictors,
            "first_objective": self.step.objectives[0],
            "n_train": proposal.n_train,
            "fit_seconds": round(proposal.fit_seconds, 4),
            "seconds": round(proposal.seconds, 4),
        }

    def _vectors(self, trials: list[FrozenTrial]) -> np.ndarray:
        vectors = [self.space.to_vector(t.user_attrs[SUBNET]) for t in trials]
        return np.array(vectors, dtype=np.int64).reshape(len(vectors), len(self.space.choices()))
