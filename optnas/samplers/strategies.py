"""What a :class:`~optnas.samplers.surrogate.SurrogateSampler` knows of its search space.

The sampler maps trial numbers to candidates, waits for a batch's inputs, seeds and stores
batches, whatever the space. A strategy object says the rest, as Optuna's ``NSGAIISampler``
takes its crossover and elite selection as objects: the space of a study, and how the trials
before a batch become the inputs of the :class:`~optnas.samplers.msunas.MSuNASStep` that
proposes it.

* :class:`OptunaSpaceStrategy`: plain Optuna distributions (given, or inferred from the
  completed trials), objectives from the trials' values and the study's directions,
  constraints from ``Trial.set_constraint``; batches stored under ``"params"``.
* :class:`NASStrategy`: an optnas :class:`~optnas.spaces.SearchSpace` with its features and
  exact costs, the figures read from the trials' user attributes (see
  :mod:`optnas.trial_attrs`); batches stored under ``"subnets"``.
"""

from __future__ import annotations

import abc
import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.search_space import IntersectionSearchSpace
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optnas.samplers.batches import BatchSizes, ConcurrentBatches, FixedBatches
from optnas.samplers.msunas import Evaluated, MSuNASStep
from optnas.samplers.optuna_space import DEFAULT_LEVELS, OptunaSpace
from optnas.samplers.selection import ExpectedGain
from optnas.spaces import SearchSpace
from optnas.trial_attrs import DUPLICATE_OF, SUBNET

FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
# The plain form's exploration (see StepOptions) with up to two objectives: benchmarks/README.md,
# bench_surrogate_optuna. With more, a batch is chosen by rank and distance instead of
# hypervolume gain, and optimism only lifts uncertain candidates into the first rank, where
# the distance rule favours them again (DTLZ2: 0.63 with 0.5, 0.71 with none).
PLAIN_EXPLORATION = 1.0
# The plain form's one pick in five by its expected hypervolume gain (two objectives; see
# ExpectedGain): a user's space may hide a piece of the front where no trial has been, which the
# optimistic predictions never reach (benchmarks/README.md, bench_surrogate_optuna, ZDT3).
PLAIN_EXPECTED_GAIN = ExpectedGain(every=5, draws=32)
# Quantity names of the plain form, as the step sees them.
OBJECTIVE = "objective:"
CONSTRAINT = "constraint:"


class LockedState:
    """Holds a ``_lock`` that threads share and that pickling leaves out (a new one after unpickling).

    Samplers are picklable, as Optuna's are: the recipe for resuming a study with its sampler.
    """

    _lock: threading.Lock

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


@dataclass(frozen=True)
class StepOptions:
    """The sampler's options of every :class:`MSuNASStep` it runs (see there).

    Args:
        predictor: the first objective's predictor (None: the strategy's).
        sec_predictor: the predictor of every other predicted quantity (None: the strategy's).
        trust_radius: candidates differ in at most this many genes from an evaluated one.
        population_size: NSGA-II population on the surrogate.
        generations: NSGA-II generations on the surrogate.
        exploration: a candidate is scored by the quantile of its predictive distribution this
            many standard deviations towards better (None: the strategy's).
    """

    predictor: str | None = None
    sec_predictor: str | None = None
    trust_radius: int | None = None
    population_size: int = 100
    generations: int = 30
    exploration: float | None = None


@dataclass(frozen=True)
class Problem:
    """One batch's step and what it learns from.

    Args:
        step: the step that proposes the batch.
        evaluated: the trials before the batch, as the step takes them.
        signs: predicted quantity → the factor that turns the step's minimised prediction
            back into the study's own direction (absent: 1).
        extra: further fields of the stored batch.
    """

    step: MSuNASStep
    evaluated: Evaluated
    signs: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class BaseSpaceStrategy(abc.ABC):
    """The space-specific part of a :class:`~optnas.samplers.surrogate.SurrogateSampler`.

    Attributes:
        points_key: the key of a stored batch's candidates (parameter dicts or subnets).
        default_seed: the seed of a sampler given none; None: the first worker of a study
            draws one and stores it in the study.
        not_waited_for: states of earlier trials, besides the finished ones, that do not
            hold a batch back.
        design_corners: the initial design starts with the smallest and the largest point
            (see :func:`~optnas.samplers.design.initial_design`).
        default_batches: the batch sizes of a sampler given no ``n_iter`` (see
            :mod:`~optnas.samplers.batches`).
    """

    points_key: ClassVar[str]
    default_seed: ClassVar[int | None] = None
    not_waited_for: ClassVar[tuple[TrialState, ...]] = ()
    design_corners: ClassVar[bool] = True
    default_batches: ClassVar[BatchSizes] = FixedBatches(5)

    @abc.abstractmethod
    def space_of(self, study: Study) -> SearchSpace | None:
        """Return the space of ``study``'s candidates; None while it is not known.

        Called from several threads at once.

        Args:
            study: the study.
        """

    def stored_points(self, space: SearchSpace, points: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Return the candidates of a stored batch that ``space`` holds (default: all).

        Args:
            space: the space the batch's vectors are taken in.
            points: the stored batch's candidates.
        """
        return list(points)

    @abc.abstractmethod
    def problem(self, study: Study, space: SearchSpace, earlier: list[FrozenTrial],
                options: StepOptions) -> Problem | None:
        """Return the step of the next batch and its inputs; None: nothing to learn from (an empty batch).

        Args:
            study: the study.
            space: the space of the candidates.
            earlier: every trial numbered below the batch, each finished or in a state of
                ``not_waited_for``.
            options: the sampler's step options.
        """


class NASStrategy(BaseSpaceStrategy):
    """A NAS search space: exact costs, features, and figures read from trial user attributes.

    Trials hold their subnet and figures in user attributes (see :mod:`optnas.trial_attrs`);
    the history is the completed trials with a subnet, those that copied an earlier trial's
    figures (``duplicate_of``) only as architectures already seen.

    Args:
        space: the search space.
        costs: exact figures of a subnet (``{"params": .., "macs": ..}``).
        vector_costs: the same figures for an array of gene vectors at once (name → array),
            called with the vectors and the names needed, to score the surrogate's offspring
            (None: costed one by one).
        objectives: the objectives' names, first one first (see :class:`MSuNASStep`).
        constraint_bounds: constraint name → bound (see :class:`MSuNASStep`).
    """

    points_key = "subnets"
    # A search's seed is an option of its configuration: without one, 0.
    default_seed = 0

    def __init__(
        self,
        space: SearchSpace,
        costs: Callable[[dict[str, Any]], dict[str, float]],
        *,
        vector_costs: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None,
        objectives: list[str],
        constraint_bounds: dict[str, float] | None = None,
    ) -> None:
        self.space = space
        self.costs = costs
        self.vector_costs = vector_costs
        self.objectives = list(objectives)
        self.constraint_bounds = dict(constraint_bounds or {})
        # One step per options, kept across batches: it caches the exact costs it computed.
        self._steps: dict[StepOptions, MSuNASStep] = {}

    def step(self, options: StepOptions) -> MSuNASStep:
        """Return the step with ``options``, built once.

        Args:
            options: the sampler's step options.
        """
        step = self._steps.get(options)
        if step is None:
            step = MSuNASStep(
                self.space, self.costs, objectives=self.objectives, constraint_bounds=self.constraint_bounds,
                vector_costs=self.vector_costs, **dataclasses.asdict(options),
            )
            self._steps[options] = step
        return step

    def space_of(self, study: Study) -> SearchSpace:
        return self.space

    def problem(self, study: Study, space: SearchSpace, earlier: list[FrozenTrial],
                options: StepOptions) -> Problem:
        seen = [t for t in earlier if t.state == TrialState.COMPLETE and SUBNET in t.user_attrs]
        evaluated = [t for t in seen if DUPLICATE_OF not in t.user_attrs]
        step = self.step(options)
        return Problem(step, Evaluated(
            vectors=_stack(space, [t.user_attrs[SUBNET] for t in evaluated]),
            observed={
                name: np.array([float(t.user_attrs.get(name, np.nan)) for t in evaluated])
                for name in step.quantities
            },
            feasible=_feasible(evaluated),
            seen=_stack(space, [t.user_attrs[SUBNET] for t in seen]),
        ), extra={"first_objective": self.objectives[0]})


class OptunaSpaceStrategy(LockedState, BaseSpaceStrategy):
    """Plain Optuna distributions, on a user's own objective.

    Objectives come from the trials' values and the study's directions, constraints from
    ``Trial.set_constraint`` (feasible iff every value ≤ 0; infeasible candidates ranked by
    their predicted total excess, Optuna's penalty). Enqueued trials not yet started do not
    hold a batch back.

    Args:
        search_space: parameter name → Optuna distribution; None: the intersection of the
            completed trials' parameters, as Optuna's own samplers infer it (unknown until a
            trial has completed).
        exact: ``callable(params) -> {objective index: value}`` for objectives known without
            evaluating; they are never predicted.
        levels: the most values a float (or a long integer range) is searched on (see
            :mod:`optnas.samplers.optuna_space`).
    """

    points_key = "params"
    not_waited_for = (TrialState.WAITING,)
    # The first and last values of a user's parameters are no better guesses than others.
    design_corners = False
    # A sequential study learns from every trial, as GPSampler does (benchmarks/README.md,
    # fifteenth pass); parallel workers share a batch instead of waiting for each other's trials.
    default_batches = ConcurrentBatches(most=5)

    def __init__(
        self,
        search_space: dict[str, BaseDistribution] | None = None,
        *,
        exact: Callable[[dict[str, Any]], dict[int, float]] | None = None,
        levels: int = DEFAULT_LEVELS,
    ) -> None:
        self.space = OptunaSpace(search_space, levels) if search_space is not None else None
        self.exact = exact
        self.levels = levels
        self._spaces: dict[tuple, OptunaSpace] = {}
        self._intersection = IntersectionSearchSpace()
        self._lock = threading.Lock()

    def space_of(self, study: Study) -> OptunaSpace | None:
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
            space = self._spaces.get(key)
            if space is None:
                space = OptunaSpace(distributions, self.levels)
                self._spaces[key] = space
        return space

    def stored_points(self, space: SearchSpace, points: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # The inferred space may have changed since the batch was stored.
        assert isinstance(space, OptunaSpace)
        return [p for p in points if space.contains(p)]

    def problem(self, study: Study, space: SearchSpace, earlier: list[FrozenTrial],
                options: StepOptions) -> Problem | None:
        assert isinstance(space, OptunaSpace)
        signs = [1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in study.directions]
        points = {t.number: _point(space, t) for t in earlier if t.state in FINISHED}
        seen = [t for t in earlier if points.get(t.number) is not None]
        evaluated = [t for t in seen if t.state == TrialState.COMPLETE and t.values is not None]
        if not evaluated:
            return None
        objectives = [f"{OBJECTIVE}{i}" for i in range(len(signs))]
        observed = {name: np.array([sign * t.values[i] for t in evaluated], dtype=float)
                    for i, (name, sign) in enumerate(zip(objectives, signs))}
        # Constraints the trials set, each predicted for the candidates (at least two values).
        bounds: dict[str, float] = {}
        for key in sorted({key for t in evaluated for key in t.constraints}):
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

        # Imported here: the predictors package pulls in scikit-learn.
        from optnas.predictors.grouped_gp import GroupedGPPredictor

        groups, one_hot = space.feature_groups()
        model = GroupedGPPredictor(groups=groups, categorical=one_hot, continuous=space.gridded_groups(), warp="auto")
        settings = _resolved(options, predictor=model,
                             exploration=PLAIN_EXPLORATION if len(signs) <= 2 else 0.0)
        step = MSuNASStep(
            space, costs, objectives=objectives, constraint_bounds=bounds,
            plausible=lambda name, predicted: predicted,
            # Optuna's penalty: the sum of the positive constraint values.
            constraint_scales=dict.fromkeys(bounds, 1.0),
            expected=PLAIN_EXPECTED_GAIN,
            **settings,
        )
        return Problem(step, Evaluated(
            vectors=_stack(space, [points[t.number] for t in evaluated]),
            observed=observed,
            feasible=_feasible(evaluated),
            seen=_stack(space, [points[t.number] for t in seen]),
        ), signs=dict(zip(objectives, signs)))


def _resolved(options: StepOptions, *, predictor: Any, **defaults: Any) -> dict[str, Any]:
    """The step's settings: ``options`` with the strategy's defaults where they say None."""
    settings = dataclasses.asdict(options)
    for key, value in {"sec_predictor": predictor, "predictor": predictor, **defaults}.items():
        if settings[key] is None:
            settings[key] = value
    return settings


def _point(space: OptunaSpace, trial: FrozenTrial) -> dict[str, Any] | None:
    """A finished trial's parameters as a point of ``space``; None when they are off it.

    A parameter of the space a completed trial did not suggest (a conditional one) is read as
    its first value: the trial's values did not depend on it. A failed or pruned trial may have
    stopped before suggesting it, so it counts only with every parameter.
    """
    params = {**space.smallest(), **trial.params} if trial.state == TrialState.COMPLETE else trial.params
    return params if space.contains(params) else None


def _stack(space: SearchSpace, points: list[dict[str, Any]]) -> np.ndarray:
    """The gene vectors of ``points``, as an array (n, n_genes) even when n is 0."""
    vectors = [space.to_vector(point) for point in points]
    return np.array(vectors, dtype=np.int64).reshape(len(vectors), len(space.choices()))


def _feasible(trials: list[FrozenTrial]) -> np.ndarray:
    """Whether each trial satisfied every constraint it set."""
    return np.array([all(v <= 0 for v in t.constraints.values()) for t in trials], dtype=bool)
