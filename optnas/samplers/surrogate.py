"""The surrogate-assisted NSGA-II sampler: the MSuNAS step inside Optuna.

It works in two forms, one class:

* in any Optuna study, on a user's own objective: ``SurrogateSampler(n_doe=20, n_iter=8,
  seed=0)``, the search space given as Optuna distributions or inferred from the trials'
  ``suggest_*`` calls, the objectives from the trials' values and the study's directions,
  the constraints from ``Trial.set_constraint``, and objectives known without evaluating
  from ``exact``;
* in an optnas search: ``SurrogateSampler(space, costs, objectives=..., constraint_bounds=...)``
  on a NAS :class:`~optnas.spaces.SearchSpace`, the figures read from the trials' user
  attributes (see :mod:`optnas.trial_attrs`).

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
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optnas.samplers.design import initial_design
from optnas.samplers.msunas import Evaluated, MSuNASStep
from optnas.samplers.optuna_space import DEFAULT_LEVELS, OptunaSpace
from optnas.spaces import SearchSpace
from optnas.trial_attrs import DUPLICATE_OF, SUBNET

BATCH_ATTR_PREFIX = "surrogate:batch:"
# Where a study run with ``seed=None`` keeps the seed its first worker drew, for the others.
SEED_ATTR = "surrogate:seed"
_FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
# Quantity names of the Optuna form, as the step sees them.
OBJECTIVE = "objective:"
CONSTRAINT = "constraint:"


class SurrogateSampler(BaseSampler):
    """Proposes the initial design, then the batches of :class:`MSuNASStep`, trial by trial.

    In a plain Optuna study::

        sampler = SurrogateSampler(n_doe=20, n_iter=8, seed=0)
        study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
        study.optimize(objective, n_trials=100)

    Categorical and integer parameters are searched exactly, floats on a grid of ``levels``
    values (see :mod:`optnas.samplers.optuna_space`). Any directions, any number of
    objectives (the batch fills the gaps of the front by hypervolume with two), and
    constraints set with ``Trial.set_constraint`` (feasible iff every value ≤ 0; feasibility
    first, infeasible candidates ranked by their predicted total excess). Each objective and
    constraint is predicted by a model fitted on the completed trials, except the objectives
    ``exact`` gives.

    Args:
        search_space: parameter name → Optuna distribution; None: inferred, as Optuna's own
            samplers do, from the completed trials (the intersection of their parameters):
            until a trial has completed, trials are sampled at random. An optnas
            :class:`~optnas.spaces.SearchSpace` selects the NAS form (or pass ``space=``).
        costs: NAS form only: exact figures of a subnet (``{"params": .., "macs": ..}``).
        vector_costs: NAS form only, optional: the same figures for an array of gene vectors
            at once (name → array), used to score the surrogate's offspring.
        n_doe: trials of the initial design (a Latin design over the parameters' values).
        n_iter: candidates per batch.
        seed: seed of the design, the predictors and the evolution. Workers of one study
            must agree on it; with None the first worker draws one and stores it in the study.
        exact: plain form: ``callable(params) -> {objective index: value}`` for objectives
            known without evaluating (costs computed from the parameters); they are never
            predicted. The objective still returns every value.
        predictor: the model of the first objective (see :func:`optnas.predictors.get_predictor`;
            ``"as"`` picks one by cross-validation; ``"mlp"`` needs torch).
        sec_predictor: the model of every other predicted objective and constraint.
        trust_radius: candidates differ in at most this many parameters from an evaluated
            trial (None: anywhere).
        population_size, generations: NSGA-II on the surrogate.
        levels: the most values a float (or a long integer range) is searched on.
        poll_seconds: how often a trial waiting for the previous batch checks again.
        space: the NAS search space (the NAS form).
        objectives, constraint_bounds: NAS form only (see :class:`MSuNASStep`).
    """

    def __init__(
        self,
        search_space: dict[str, BaseDistribution] | SearchSpace | None = None,
        costs: Callable[[dict[str, Any]], dict[str, float]] | None = None,
        *,
        vector_costs: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None,
        n_doe: int = 20,
        n_iter: int = 8,
        seed: int | None = None,
        exact: Callable[[dict[str, Any]], dict[int, float]] | None = None,
        predictor: str = "as",
        sec_predictor: str = "as",
        trust_radius: int | None = None,
        population_size: int = 100,
        generations: int = 30,
        levels: int = DEFAULT_LEVELS,
        poll_seconds: float = 1.0,
        space: SearchSpace | None = None,
        objectives: list[str] | None = None,
        constraint_bounds: dict[str, float] | None = None,
    ) -> None:
        if isinstance(search_space, SearchSpace):
            space, search_space = search_space, None
        if n_doe < 1 or n_iter < 1:
            raise ValueError(f"n_doe and n_iter must be at least 1, got {n_doe} and {n_iter}")
        self.nas = space is not None
        self.n_doe = n_doe
        self.n_iter = n_iter
        self.poll_seconds = poll_seconds
        self.exact = exact
        self.levels = levels
        self._options = {"predictor": predictor, "sec_predictor": sec_predictor, "trust_radius": trust_radius,
                             "population_size": population_size, "generations": generations}
        if self.nas:
            if costs is None or objectives is None:
                raise ValueError("the NAS form needs costs and objectives")
            if exact is not None:
                raise ValueError("exact is for the Optuna form; the NAS form takes costs")
            self.space: SearchSpace | None = space
            self.step: MSuNASStep | None = MSuNASStep(
                space, costs, objectives=objectives, constraint_bounds=dict(constraint_bounds or {}),
                vector_costs=vector_costs, **self._options,
            )
            self.seed: int | None = 0 if seed is None else seed
        else:
            if costs is not None or vector_costs is not None or objectives is not None or constraint_bounds is not None:
                raise ValueError("costs, vector_costs, objectives and constraint_bounds are for the NAS form (space=...); "
                                 "a plain study takes its objectives from the study and exact=")
            self.space = OptunaSpace(search_space, levels) if search_space is not None else None
            self.step = None
            self.seed = seed
        self._fallback = RandomSampler(seed=seed)
        self._designs: dict[tuple, np.ndarray] = {}
        self._batches: dict[int, dict[str, Any]] = {}
        self._study_seed: int | None = self.seed
        self._intersection = IntersectionSearchSpace()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # Picklable, like Optuna's samplers (the recipe for resuming a study with its sampler).
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # ---- Optuna's sampler interface -------------------------------------------------------

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        space = self._space(study)
        # The full, fixed encoding when known, so that even trial 0 is proposed by this sampler.
        return space.distributions() if space is not None else {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        space = self._space(study)
        if space is None or not search_space:
            return {}
        vector = self.candidate(study, trial.number, space)
        if vector is None:
            return {}
        return space.encode(space.from_vector(vector))

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def reseed_rng(self) -> None:
        self._fallback.reseed_rng()

    # ---- the mapping of trial numbers to candidates ---------------------------------------

    def candidate(self, study: Study, number: int, space: SearchSpace | None = None) -> np.ndarray | None:
        """Return the gene vector trial ``number`` evaluates (None: sample it at random).

        None when the space is exhausted, or, in the plain form, while the space is unknown.

        Args:
            study: the study.
            number: the trial number.
            space: the space the vector is in (default: the sampler's, or the inferred one).
        """
        space = space if space is not None else self._space(study)
        if space is None:
            return None
        if number < self.n_doe:
            design = self._design(study, space)
            return design[number] if number < len(design) else None
        batch_index, position = divmod(number - self.n_doe, self.n_iter)
        batch = self.batch(study, batch_index + 1, space)
        vectors = batch["vectors"]
        return np.asarray(vectors[position]) if position < len(vectors) else None

    def batch(self, study: Study, k: int, space: SearchSpace | None = None) -> dict[str, Any]:
        """Return batch ``k`` (k ≥ 1): stored, cached, or computed once its inputs are final.

        Args:
            study: the study.
            k: the batch index.
            space: the space of its vectors (default: the sampler's, or the inferred one).
        """
        space = space if space is not None else self._space(study)
        if space is None:
            raise ValueError("the search space is not known yet: no trial has completed")
        with self._lock:
            cached = self._batches.get(k)
            if cached is not None and cached["space"] is space:
                return cached
        stored = study.user_attrs.get(f"{BATCH_ATTR_PREFIX}{k:04d}")
        if stored is None:
            first_number = self.n_doe + (k - 1) * self.n_iter
            history = self._wait_for_history(study, first_number)
            stored = self._propose(study, space, history, k)
            study.set_user_attr(f"{BATCH_ATTR_PREFIX}{k:04d}", stored)
        key = "subnets" if self.nas else "params"
        points = [p for p in stored[key] if self.nas or space.contains(p)]
        batch = {**stored, "vectors": [space.to_vector(p) for p in points], "space": space}
        with self._lock:
            self._batches[k] = batch
        return batch

    # ---- inside ---------------------------------------------------------------------------

    def _space(self, study: Study) -> SearchSpace | None:
        """The sampler's space; in the plain form without one, the completed trials' intersection."""
        if self.space is not None:
            return self.space
        with self._lock:
            # One instance: it reads only the trials completed since its last call.
            distributions = self._intersection.calculate(study)
        distributions = {name: d for name, d in distributions.items() if not d.single()}
        if not distributions:
            return None
        key = tuple(sorted((name, repr(d)) for name, d in distributions.items()))
        with self._lock:
            cached = self._designs.get(("space",) + key)
            if cached is None:
                cached = OptunaSpace(distributions, self.levels)
                self._designs[("space",) + key] = cached
        return cached

    def _seed(self, study: Study) -> int:
        """The seed; with ``seed=None`` the one stored in the study (drawn by its first worker)."""
        if self._study_seed is not None:
            return self._study_seed
        stored = study.user_attrs.get(SEED_ATTR)
        if stored is None:
            stored = int(np.random.SeedSequence().generate_state(1)[0])
            study.set_user_attr(SEED_ATTR, stored)
            # A worker that wrote at the same moment wins if it wrote last: read it back.
            stored = study.user_attrs.get(SEED_ATTR, stored)
        self._study_seed = int(stored)
        return self._study_seed

    def _design(self, study: Study, space: SearchSpace) -> np.ndarray:
        with self._lock:
            design = self._designs.get(("design", id(space)))
        if design is None:
            design = initial_design(space, self.n_doe, self._seed(study))
            with self._lock:
                self._designs[("design", id(space))] = design
        return design

    def _wait_for_history(self, study: Study, first_number: int) -> list[FrozenTrial]:
        # Enqueued trials not yet started do not hold the batch back in the plain form.
        ignored = () if self.nas else (TrialState.WAITING,)
        while True:
            earlier = [t for t in study.get_trials(deepcopy=False) if t.number < first_number]
            if all(t.state in _FINISHED or t.state in ignored for t in earlier):
                if self.nas:
                    return [t for t in earlier if t.state == TrialState.COMPLETE and SUBNET in t.user_attrs]
                return [t for t in earlier if t.state in _FINISHED]
            # Dead workers' trials would block us forever: fail them once their heartbeat is stale.
            optuna.storages.fail_stale_trials(study)
            time.sleep(self.poll_seconds)

    def _propose(self, study: Study, space: SearchSpace, history: list[FrozenTrial], k: int) -> dict[str, Any]:
        """Run the step on the completed trials and return the batch as the study stores it."""
        if self.nas:
            return self._propose_nas(history, k)
        return self._propose_plain(study, space, history, k)

    def _propose_nas(self, history: list[FrozenTrial], k: int) -> dict[str, Any]:
        assert self.step is not None and self.space is not None
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

    def _propose_plain(self, study: Study, space: SearchSpace, history: list[FrozenTrial], k: int) -> dict[str, Any]:
        """The step on a plain study: objectives from the trials' values, constraints predicted."""
        assert isinstance(space, OptunaSpace)
        signs = [1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in study.directions]
        seen = [t for t in history if space.contains(t.params)]
        evaluated = [t for t in seen if t.state == TrialState.COMPLETE and t.values is not None]
        empty = {"iteration": k, "params": [], "predicted": {}, "predictors": {}, "n_train": len(evaluated)}
        if not evaluated:
            return empty
        objectives = [f"{OBJECTIVE}{i}" for i in range(len(signs))]
        observed = {name: np.array([sign * t.values[i] for t in evaluated], dtype=float)
                    for i, (name, sign) in enumerate(zip(objectives, signs))}
        # Constraints the trials set, each predicted for the candidates (at least two values).
        keys = sorted({key for t in evaluated for key in t.constraints})
        bounds: dict[str, float] = {}
        for key in keys:
            values = np.array([t.constraints.get(key, np.nan) for t in evaluated], dtype=float)
            if (~np.isnan(values)).sum() >= 2:
                observed[f"{CONSTRAINT}{key}"] = values
                bounds[f"{CONSTRAINT}{key}"] = 0.0
        exact = self.exact

        def costs(params: dict[str, Any]) -> dict[str, float]:
            if exact is None:
                return {}
            values = exact(params)
            wrong = [i for i in values if not isinstance(i, (int, np.integer)) or not 0 <= i < len(signs)]
            if wrong:
                raise ValueError(f"exact returned objective indices {wrong}; the study has objectives "
                                 f"0..{len(signs) - 1}")
            return {f"{OBJECTIVE}{int(i)}": signs[int(i)] * float(v) for i, v in values.items()}

        step = MSuNASStep(
            space, costs, objectives=objectives, constraint_bounds=bounds,
            plausible=lambda name, predicted: predicted,
            # Optuna's penalty: the sum of the positive constraint values.
            constraint_scales={name: 1.0 for name in bounds},
            **self._options,
        )
        proposal = step(Evaluated(
            vectors=_stack(space, evaluated),
            observed=observed,
            feasible=np.array([all(v <= 0 for v in t.constraints.values()) for t in evaluated], dtype=bool),
            seen=_stack(space, seen),
        ), self.n_iter, self._seed(study), k)
        return {
            "iteration": k,
            "params": [space.from_vector(vector) for vector in proposal.vectors],
            # In the objectives' own directions (the step minimises).
            "predicted": {
                name: [float(v) * (signs[int(name[len(OBJECTIVE):])] if name.startswith(OBJECTIVE) else 1.0)
                       for v in values]
                for name, values in proposal.predicted.items()
            },
            "predictors": proposal.predictors,
            "n_train": proposal.n_train,
            "fit_seconds": round(proposal.fit_seconds, 4),
            "seconds": round(proposal.seconds, 4),
        }

    def _vectors(self, trials: list[FrozenTrial]) -> np.ndarray:
        assert self.space is not None
        vectors = [self.space.to_vector(t.user_attrs[SUBNET]) for t in trials]
        return np.array(vectors, dtype=np.int64).reshape(len(vectors), len(self.space.choices()))


def _stack(space: SearchSpace, trials: list[FrozenTrial]) -> np.ndarray:
    vectors = [space.to_vector(t.params) for t in trials]
    return np.array(vectors, dtype=np.int64).reshape(len(vectors), len(space.choices()))
