"""The surrogate-assisted NSGA-II sampler: the MSuNAS step inside Optuna.

One sampler, its space-specific part an injected strategy (see
:mod:`optnas.samplers.strategies`):

* in any Optuna study, on a user's own objective: ``SurrogateSampler(seed=0)``, the search
  space given as Optuna distributions or inferred from the trials' ``suggest_*`` calls, the
  objectives from the trials' values and the study's directions, the constraints from
  ``Trial.set_constraint``, and objectives known without evaluating from ``exact`` (an
  :class:`~optnas.samplers.strategies.OptunaSpaceStrategy`);
* in an optnas search: ``SurrogateSampler(strategy=NASStrategy(space, costs,
  objectives=..., constraint_bounds=...))`` on a NAS :class:`~optnas.spaces.SearchSpace`,
  the figures read from the trials' user attributes (see :mod:`optnas.trial_attrs`).

Trials are mapped to candidates by trial number, which the storage hands out atomically:
numbers ``0 .. n_doe-1`` take the initial design, and batch ``k`` takes the numbers from its
first, ``first_k``, on: ``first_1 = n_doe``, ``first_{k+1} = first_k + size_k``. Batch ``k``,
its size included (see :mod:`optnas.samplers.batches`), is computed from exactly the trials
numbered below ``first_k``, once they have all finished, so every worker, thread or process,
computes the same batch and takes a different candidate of it: no locks, no duplicates, and a
late worker simply gets the next number. The batch is also stored in the study's user
attributes, where later readers take it as it was.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from optnas.optuna_private import holds
from optnas.samplers.batches import FixedBatches
from optnas.samplers.design import initial_design
from optnas.samplers.optuna_space import DEFAULT_LEVELS
from optnas.samplers.strategies import FINISHED, BaseSpaceStrategy, LockedState, OptunaSpaceStrategy, StepOptions
from optnas.spaces import SearchSpace

BATCH_ATTR_PREFIX = "surrogate:batch:"
# A worker waiting for a batch fails dead workers' stale trials at every poll, and Optuna warns
# that the function is experimental at every call: a parallel study's log would fill with it.
warnings.filterwarnings("ignore", message=r".*fail_stale_trials is experimental",
                        category=optuna.exceptions.ExperimentalWarning)
# Where a study run with ``seed=None`` keeps the seed its first worker drew, for the others.
SEED_ATTR = "surrogate:seed"


class _HeldByCaller(Exception):
    """A batch's inputs include a trial the calling thread has not finished."""


class SurrogateSampler(LockedState, BaseSampler):
    """Proposes the initial design, then the batches of an
    :class:`~optnas.samplers.msunas.MSuNASStep`, trial by trial.

    In a plain Optuna study::

        sampler = SurrogateSampler(seed=0)
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
            until a trial has completed, trials are sampled at random.
        strategy: the space-specific part (see :mod:`optnas.samplers.strategies`), e.g. a
            :class:`~optnas.samplers.strategies.NASStrategy`; None: an
            :class:`~optnas.samplers.strategies.OptunaSpaceStrategy` of ``search_space``,
            ``exact`` and ``levels``, which go to it and not beside a strategy.
        exact: ``callable(params) -> {objective index: value}`` for objectives known without
            evaluating (costs computed from the parameters); they are never predicted. The
            objective still returns every value.
        levels: the most values a float (or a long integer range) is searched on.
        n_doe: trials of the initial design (a Latin design over the parameters' values).
        n_iter: candidates per batch; None: the strategy's batch sizes (in plain form as many as
            trials ran at once lately, at most 5: one in a sequential study; see
            :mod:`optnas.samplers.batches`).
        seed: seed of the design, the predictors and the evolution. Workers of one study
            must agree on it; with None the strategy's default (0 for a NAS search), or
            the first worker draws one and stores it in the study.
        predictor: the model of the first objective (see :func:`optnas.predictors.get_predictor`;
            ``"as"`` picks one by cross-validation; ``"mlp"`` needs torch); None: the
            strategy's (a Gaussian process with a length scale per parameter on Optuna
            distributions, ``"as"`` on a NAS space).
        sec_predictor: the model of every other predicted objective and constraint (None: the
            strategy's).
        trust_radius: candidates differ in at most this many parameters from an evaluated
            trial (None: anywhere).
        population_size, generations: NSGA-II on the surrogate.
        exploration: the surrogate scores a candidate by the quantile of its predictive
            distribution this many standard deviations towards better (where the model draws
            from one), so that uncertain regions are tried; None: the strategy's.
        poll_seconds: how often a trial waiting for the previous batch checks again.
    """

    def __init__(
        self,
        search_space: dict[str, BaseDistribution] | None = None,
        *,
        strategy: BaseSpaceStrategy | None = None,
        exact: Callable[[dict[str, Any]], dict[int, float]] | None = None,
        levels: int = DEFAULT_LEVELS,
        n_doe: int = 20,
        n_iter: int | None = None,
        seed: int | None = None,
        predictor: str | None = None,
        sec_predictor: str | None = None,
        trust_radius: int | None = None,
        population_size: int = 100,
        generations: int = 30,
        exploration: float | None = None,
        poll_seconds: float = 1.0,
    ) -> None:
        if isinstance(search_space, SearchSpace):
            raise TypeError("search_space takes Optuna distributions; a NAS space goes in "
                            "strategy=NASStrategy(space, costs, objectives=...)")
        if strategy is None:
            strategy = OptunaSpaceStrategy(search_space, exact=exact, levels=levels)
        elif search_space is not None or exact is not None or levels != DEFAULT_LEVELS:
            raise ValueError("search_space, exact and levels build the default strategy; "
                             "with strategy=..., give them to the strategy")
        if n_doe < 1 or (n_iter is not None and n_iter < 1):
            raise ValueError(f"n_doe and n_iter must be at least 1, got {n_doe} and {n_iter}")
        self.strategy = strategy
        self.n_doe = n_doe
        self.batches = strategy.default_batches if n_iter is None else FixedBatches(n_iter)
        self.poll_seconds = poll_seconds
        self.options = StepOptions(predictor=predictor, sec_predictor=sec_predictor, trust_radius=trust_radius,
                                   population_size=population_size, generations=generations,
                                   exploration=exploration)
        self.seed = strategy.default_seed if seed is None else seed
        self._fallback = RandomSampler(seed=seed)
        self._designs: dict[int, np.ndarray] = {}
        self._batches: dict[int, dict[str, Any]] = {}
        # Batch index → its size, as far as this process has learnt the numbering.
        self._sizes: dict[int, int] = {}
        self._study_seed: int | None = self.seed
        # Open trials of this process: trial number → the thread that asked for it.
        self._open: dict[int, int] = {}
        self._lock = threading.Lock()

    # ---- Optuna's sampler interface -------------------------------------------------------

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        space = self.strategy.space_of(study)
        # The full, fixed encoding when known, so that even trial 0 is proposed by this sampler.
        return space.distributions() if space is not None else {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """Return the trial's candidate, on ``search_space`` only, every parameter of it given a value.

        ``search_space`` may differ from the space the candidates are in (a wrapper such as
        ``PartialFixedSampler`` removes its fixed parameters; a caller may pass its own): Optuna
        refuses parameters outside it, so only its parameters, with values it holds, are given.
        Parameters the candidate does not hold (no candidate: a design smaller than ``n_doe``
        on a small space, a short batch, a space not known yet, or a batch whose inputs
        include a trial the asking thread itself has not told yet, as ask-and-tell with several
        trials open does: waiting for it would never end) are drawn at random here, as
        Optuna's relative samplers answer for their whole space: in the space's order, the order
        optnas's NAS objective suggests them in, so the values are those ``sample_independent``
        would draw. Single-valued distributions are left to Optuna, which never asks for them.
        """
        if not search_space:
            return {}
        params: dict[str, Any] = {}
        space = self.strategy.space_of(study)
        vector = self.candidate(study, trial.number, space) if space is not None else None
        if vector is not None:
            candidate = space.encode(space.from_vector(vector))
            params = {name: value for name, value in candidate.items()
                      if name in search_space and holds(search_space[name], value)}
        for name, distribution in search_space.items():
            if name not in params and not distribution.single():
                params[name] = self._fallback.sample_independent(study, trial, name, distribution)
        return params

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def reseed_rng(self) -> None:
        self._fallback.reseed_rng()

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        # Which thread asked for each open trial: see _wait_for_earlier.
        with self._lock:
            self._open[trial.number] = threading.get_ident()

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        with self._lock:
            self._open.pop(trial.number, None)

    # ---- the mapping of trial numbers to candidates ---------------------------------------

    def candidate(self, study: Study, number: int, space: SearchSpace | None = None) -> np.ndarray | None:
        """Return the gene vector trial ``number`` evaluates (None: sample it at random).

        None when the space is exhausted, or while the strategy does not know it yet.

        Args:
            study: the study.
            number: the trial number.
            space: the space the vector is in (default: the strategy's space of the study).
        """
        space = space if space is not None else self.strategy.space_of(study)
        if space is None:
            return None
        if number < self.n_doe:
            design = self._design(study, space)
            return design[number] if number < len(design) else None
        try:
            for k, first, size, earlier in self._chain(study):
                if number < first + size:
                    batch = self._load(study, k, space, (first, earlier))
                    break
        except _HeldByCaller:
            return None
        vectors = batch["vectors"]
        return np.asarray(vectors[number - first]) if number - first < len(vectors) else None

    def batch(self, study: Study, k: int, space: SearchSpace | None = None) -> dict[str, Any]:
        """Return batch ``k`` (k ≥ 1): stored, cached, or computed once its inputs are final.

        Args:
            study: the study.
            k: the batch index.
            space: the space of its vectors (default: the strategy's space of the study).
        """
        space = space if space is not None else self.strategy.space_of(study)
        if space is None:
            raise ValueError("the search space is not known yet: no trial has completed")
        return self._load(study, k, space, None)

    def first_number(self, study: Study, k: int) -> int:
        """Return the number of batch ``k``'s first trial, once the trials before each earlier batch are final.

        Args:
            study: the study.
            k: the batch index (k ≥ 1).
        """
        return next(first for j, first, _, _ in self._chain(study) if j == k)

    # ---- inside ---------------------------------------------------------------------------

    def _load(self, study: Study, k: int, space: SearchSpace,
              located: tuple[int, list[FrozenTrial] | None] | None) -> dict[str, Any]:
        """Batch ``k``: cached, stored, or proposed from the trials before it.

        ``located``: its first trial number and, where the chain read them, the trials before
        it (None: found here).
        """
        with self._lock:
            cached = self._batches.get(k)
            if cached is not None and cached["space"] is space:
                return cached
        stored = study.user_attrs.get(f"{BATCH_ATTR_PREFIX}{k:04d}")
        if stored is None:
            first, earlier = located if located is not None else (self.first_number(study, k), None)
            if earlier is None:
                earlier = self._wait_for_earlier(study, first)
            stored = self._propose(study, space, earlier, k, first)
            study.set_user_attr(f"{BATCH_ATTR_PREFIX}{k:04d}", stored)
        with self._lock:
            self._sizes[k] = self._stored_size(stored)
        points = self.strategy.stored_points(space, stored[self.strategy.points_key])
        batch = {**stored, "vectors": [space.to_vector(p) for p in points], "space": space}
        with self._lock:
            self._batches[k] = batch
        return batch

    def _chain(self, study: Study) -> Iterator[tuple[int, int, int, list[FrozenTrial] | None]]:
        """The batches in order, as ``(k, first trial number, size, trials before it)``.

        A size is learnt, stored, or computed from the trials before the batch (waiting for
        them); those trials are yielded only where they were read for it, else None. The study's
        attributes are read only for a size this process has not learnt.
        """
        k, first = 1, self.n_doe
        attributes: dict[str, Any] | None = None
        while True:
            with self._lock:
                size = self._sizes.get(k)
            earlier = None
            if size is None:
                attributes = study.user_attrs if attributes is None else attributes
                stored = attributes.get(f"{BATCH_ATTR_PREFIX}{k:04d}")
                if stored is not None:
                    size = self._stored_size(stored)
                else:
                    earlier = self._wait_for_earlier(study, first)
                    size = self.batches.size(earlier)
                with self._lock:
                    self._sizes[k] = size
            yield k, first, size, earlier
            k, first = k + 1, first + size

    def _stored_size(self, batch: dict[str, Any]) -> int:
        # Batches stored before sizes varied hold none: they were all the same size.
        return int(batch.get("size", self.batches.most))

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
            design = self._designs.get(id(space))
        if design is None:
            design = initial_design(space, self.n_doe, self._seed(study), corners=self.strategy.design_corners)
            with self._lock:
                self._designs[id(space)] = design
        return design

    def _wait_for_earlier(self, study: Study, first_number: int) -> list[FrozenTrial]:
        """The trials numbered below ``first_number``, once none holds the batch back.

        Raises :class:`_HeldByCaller` when one that does was asked by the calling thread
        itself (ask-and-tell with several trials open): it cannot finish while we wait.
        """
        while True:
            earlier = [t for t in study.get_trials(deepcopy=False) if t.number < first_number]
            waiting = [t for t in earlier if t.state not in FINISHED and t.state not in self.strategy.not_waited_for]
            if not waiting:
                return earlier
            with self._lock:
                own = any(self._open.get(t.number) == threading.get_ident() for t in waiting)
            if own:
                raise _HeldByCaller
            # Dead workers' trials would block us forever: fail them once their heartbeat is stale.
            optuna.storages.fail_stale_trials(study)
            time.sleep(self.poll_seconds)

    def _propose(self, study: Study, space: SearchSpace, earlier: list[FrozenTrial], k: int,
                 first: int) -> dict[str, Any]:
        """Run the strategy's step on the earlier trials; return batch ``k`` (from trial ``first`` on) as stored."""
        key = self.strategy.points_key
        size = self.batches.size(earlier)
        problem = self.strategy.problem(study, space, earlier, self.options)
        # A predictor needs two trials (e.g. n_doe=1, or all but one of the design failed).
        if problem is None or len(problem.evaluated.vectors) < 2:
            return {"iteration": k, "first": first, "size": size, key: [], "predicted": {}, "predictors": {},
                    "n_train": 0}
        proposal = problem.step(problem.evaluated, size, self._seed(study), k, first - self.n_doe)
        return {
            "iteration": k,
            "first": first,
            "size": size,
            key: [space.from_vector(vector) for vector in proposal.vectors],
            # Back in the study's own directions where the strategy minimised a quantity.
            "predicted": {
                name: [float(v) * problem.signs.get(name, 1.0) for v in values]
                for name, values in proposal.predicted.items()
            },
            "predictors": proposal.predictors,
            **problem.extra,
            "n_train": proposal.n_train,
            "fit_seconds": round(proposal.fit_seconds, 4),
            "seconds": round(proposal.seconds, 4),
        }
