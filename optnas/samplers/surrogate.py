"""The surrogate-assisted NSGA-II sampler (MSuNAS inside Optuna).

Trials are mapped to candidates by trial number, which the storage hands out atomically:
numbers ``0 .. n_doe-1`` take the initial design, and numbers
``n_doe + (k-1)·n_iter + i`` take candidate ``i`` of batch ``k``. Batch ``k`` is computed
from exactly the trials numbered below its first number, once they have all finished, so
every worker, thread or process, computes the same batch and takes a different candidate of
it: no locks, no duplicates, and a late worker simply gets the next number. The batch is also
stored in the study's user attributes, where later readers take it as it was.
"""

from __future__ import annotations

import json
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
from optnas.samplers.evolution import SurrogateNSGA2, constrained_ranks
from optnas.samplers.selection import select_batch
from optnas.spaces import SearchSpace

BATCH_ATTR_PREFIX = "surrogate:batch:"
_FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


class SurrogateSampler(BaseSampler):
    """Proposes architectures by NSGA-II on an accuracy predictor plus exact costs.

    Args:
        space: the search space.
        costs: exact cost figures of a subnet (e.g. ``{"params": .., "macs": ..}``), no network run.
        second_objective: the cost minimised beside top1, or None for top1 alone.
        constraint_bounds: constraint name → bound (``params``/``macs``/``activations`` upper
            bounds in millions, ``top1min`` a lower bound on top1 %).
        n_doe: trials of the initial design.
        n_iter: candidates per batch.
        predictor: the predictor's name (see :func:`optnas.predictors.get_predictor`).
        seed: seed of the design, the predictor and the evolution.
        population_size: NSGA-II population on the surrogate.
        generations: NSGA-II generations on the surrogate.
        poll_seconds: how often a trial waiting for the previous batch checks again.
    """

    def __init__(
        self,
        space: SearchSpace,
        costs: Callable[[dict[str, Any]], dict[str, float]],
        *,
        second_objective: str | None,
        constraint_bounds: dict[str, float],
        n_doe: int,
        n_iter: int,
        predictor: str = "as",
        seed: int = 0,
        population_size: int = 100,
        generations: int = 30,
        poll_seconds: float = 1.0,
    ) -> None:
        self.space = space
        self.costs = costs
        self.second_objective = second_objective
        self.constraint_bounds = dict(constraint_bounds)
        self.n_doe = n_doe
        self.n_iter = n_iter
        self.predictor = predictor
        self.seed = seed
        self.poll_seconds = poll_seconds
        self._evolution = SurrogateNSGA2(space, population_size, generations)
        self._fallback = RandomSampler(seed=seed)
        self._design: np.ndarray | None = None
        self._batches: dict[int, dict[str, Any]] = {}
        self._costs_cache: dict[tuple, dict[str, float]] = {}
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
                return [t for t in earlier if t.state == TrialState.COMPLETE and "subnet" in t.user_attrs]
            # Dead workers' trials would block us forever: fail them once their heartbeat is stale.
            optuna.storages.fail_stale_trials(study)
            time.sleep(self.poll_seconds)

    def _propose(self, history: list[FrozenTrial], k: int) -> dict[str, Any]:
        from optnas.predictors import get_predictor

        started = time.perf_counter()
        evaluated = [t for t in history if "duplicate_of" not in t.user_attrs]
        X = np.array([self.space.to_vector(t.user_attrs["subnet"]) for t in evaluated])
        y = np.array([float(t.user_attrs["top1"]) for t in evaluated])
        predictor = get_predictor(self.predictor, random_state=self.seed + k)
        predictor.fit(self.space.features(X), y)
        fit_seconds = time.perf_counter() - started

        def evaluate(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # An accuracy in %: interpolants can extrapolate past either end.
            predicted = np.clip(predictor.predict(self.space.features(vectors)), 0.0, 100.0)
            costs = [self._costs_of(vector) for vector in vectors]
            return self._objectives(predicted, costs), self._violation(predicted, costs)

        feasible = [t for t in evaluated if all(v <= 0 for v in t.constraints.values())]
        front_trials = _front(feasible, self.second_objective)
        initial = np.array([self.space.to_vector(t.user_attrs["subnet"]) for t in front_trials or evaluated])
        rng = np.random.default_rng([self.seed, k])
        vectors, objectives, violation = self._evolution.run(evaluate, initial, rng)
        known = {tuple(self.space.to_vector(t.user_attrs["subnet"])) for t in history}
        fresh = np.array([tuple(v) not in known for v in vectors], dtype=bool)
        vectors, objectives, violation = vectors[fresh], objectives[fresh], violation[fresh]
        front_values = self._objectives(
            np.array([t.user_attrs["top1"] for t in feasible]), [t.user_attrs for t in feasible]
        ) if feasible else np.zeros((0, objectives.shape[1]))
        reference = self._reference(objectives, front_values)
        chosen = select_batch(objectives, violation, self.n_iter, front_values, reference) if len(vectors) else []
        return {
            "iteration": k,
            "subnets": [self.space.from_vector(vectors[i]) for i in chosen],
            "predicted_top1": [float(100.0 - objectives[i, 0]) for i in chosen],
            "predictor": self.predictor,
            "winner": getattr(predictor, "winner_", self.predictor),
            "n_train": int(len(y)),
            "fit_seconds": round(fit_seconds, 4),
            "seconds": round(time.perf_counter() - started, 4),
        }

    def _costs_of(self, vector: np.ndarray) -> dict[str, float]:
        key = tuple(int(v) for v in vector)
        cached = self._costs_cache.get(key)
        if cached is None:
            cached = self.costs(self.space.from_vector(vector))
            self._costs_cache[key] = cached
        return cached

    def _objectives(self, predicted_top1: np.ndarray, costs: list[dict[str, float]]) -> np.ndarray:
        error = 100.0 - np.asarray(predicted_top1, dtype=float)
        if self.second_objective is None:
            return error[:, None]
        second = np.array([c[self.second_objective] for c in costs], dtype=float)
        return np.column_stack([error, second])

    def _violation(self, predicted_top1: np.ndarray, costs: list[dict[str, float]]) -> np.ndarray:
        violation = np.zeros(len(costs))
        for name, bound in self.constraint_bounds.items():
            if name == "top1min":
                excess = bound - np.asarray(predicted_top1, dtype=float)
            else:
                excess = np.array([c[name] for c in costs], dtype=float) - bound
            # Relative excess, so constraints in different units weigh alike.
            violation += np.maximum(0.0, excess) / max(abs(bound), 1e-12)
        return violation

    @staticmethod
    def _reference(objectives: np.ndarray, front: np.ndarray) -> tuple[float, ...]:
        both = np.vstack([objectives, front]) if len(front) else objectives
        if len(both) == 0:
            return (100.0,)
        worst = both.max(axis=0)
        return tuple([100.0] + [1.1 * w if w > 0 else w + 1.0 for w in worst[1:]])


def _front(trials: list[FrozenTrial], second_objective: str | None) -> list[FrozenTrial]:
    """The non-dominated trials in (top1 ↑, second objective ↓)."""
    if not trials:
        return []
    if second_objective is None:
        return sorted(trials, key=lambda t: -t.user_attrs["top1"])[:10]
    values = np.array([[-t.user_attrs["top1"], t.user_attrs[second_objective]] for t in trials])
    ranks = constrained_ranks(values, np.zeros(len(trials)))
    return [t for t, rank in zip(trials, ranks) if rank == 0]


def batch_quality(study: Study) -> dict[int, dict[str, float]]:
    """Return, per stored batch, the predictor's out-of-sample Kendall τ and RMSE on it.

    Each batch was predicted before it was evaluated, so these are honest figures.

    Args:
        study: the study.
    """
    from optnas.predictors import kendall_tau, rmse

    actual: dict[str, float] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if "subnet" in trial.user_attrs and "top1" in trial.user_attrs:
            actual.setdefault(json.dumps(trial.user_attrs["subnet"], sort_keys=True), trial.user_attrs["top1"])
    quality = {}
    for key, batch in study.user_attrs.items():
        if not key.startswith(BATCH_ATTR_PREFIX):
            continue
        pairs = [
            (predicted, actual[json.dumps(subnet, sort_keys=True)])
            for subnet, predicted in zip(batch["subnets"], batch["predicted_top1"])
            if json.dumps(subnet, sort_keys=True) in actual
        ]
        if len(pairs) >= 2:
            predicted, observed = map(np.array, zip(*pairs))
            quality[batch["iteration"]] = {
                "kendall_tau": float(kendall_tau(observed, predicted)),
                "rmse": float(rmse(observed, predicted)),
                "n": len(pairs),
                "winner": batch.get("winner"),
            }
    return quality
