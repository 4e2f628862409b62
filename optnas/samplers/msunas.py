"""One MSuNAS step on arrays: fit the predictors, evolve on the surrogate, choose a batch.

Nothing here knows of Optuna: the step takes the evaluated architectures as gene vectors with
their observed figures and returns the next candidates with their predictions.
:class:`optnas.samplers.surrogate.SurrogateSampler` runs it inside a study.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from optnas.pareto import constrained_ranks, front_indices
from optnas.samplers.evolution import SurrogateNSGA2
from optnas.samplers.selection import ExpectedGain, Outcomes, select_batch
from optnas.spaces import SearchSpace

if TYPE_CHECKING:
    from optnas.predictors.base import Predictor

# The box of the batch selection's hypervolume, on objectives scaled to the evaluated front
# (ideal 0, nadir 1 on each axis): candidates past its edge count as on it (see _selection_space).
SCALED_REFERENCE = 1.1
# The reference point past that edge, with two objectives: extending the front beyond its best
# on one objective earns (1.5 - 1.1) times the improvement. Chosen on NAS-Bench-201 and the
# synthetic problems of benchmarks/bench_surrogate_optuna.py (see benchmarks/README.md).
EXTENDED_REFERENCE = 1.5


@dataclass(frozen=True)
class Evaluated:
    """The architectures evaluated so far.

    Args:
        vectors: array (n, n_genes) of their canonical gene vectors.
        observed: quantity → array (n,) of its measured values, NaN where a trial lacks it.
        feasible: array (n,) of booleans: the trial satisfied every constraint.
        seen: array (s, n_genes) of every completed trial's architecture, those that copied
            an earlier trial's figures included: none is proposed again, and the trust radius
            is measured from them.
    """

    vectors: np.ndarray
    observed: dict[str, np.ndarray]
    feasible: np.ndarray
    seen: np.ndarray


@dataclass(frozen=True)
class Proposal:
    """What one step proposes.

    Args:
        vectors: array (c, n_genes) of the chosen candidates, c ≤ the batch size (fewer only
            when the space near the evaluated architectures is exhausted).
        predicted: predicted quantity → array (c,) of the candidates' predictions.
        predictors: predicted quantity → the model that predicted it (the winner of adaptive
            switching).
        n_train: the architectures the predictors were fitted on.
        fit_seconds: the time spent fitting.
        seconds: the time of the whole step.
    """

    vectors: np.ndarray
    predicted: dict[str, np.ndarray]
    predictors: dict[str, str]
    n_train: int
    fit_seconds: float
    seconds: float


class MSuNASStep:
    """Proposes architectures by NSGA-II on predictors plus exact costs.

    Every quantity the objectives and constraints need is taken exactly from ``costs`` when
    it holds it (params, MACs... computed from the encoding) and predicted otherwise: the
    first objective by ``predictor``, any other (``avg_macs``, ``top1_robust``, or ``top1``
    for a ``top1min`` constraint beside another first objective) by ``sec_predictor``.

    Args:
        space: the search space.
        costs: exact figures of a subnet (e.g. ``{"params": .., "macs": ..}``), no network run.
        objectives: the objectives' names, first one first; ``top1`` (%) is maximised, every
            other one minimised.
        constraint_bounds: constraint name → bound (``top1min`` a lower bound on top1 %, any
            other an upper bound on the quantity of that name).
        predictor: the first objective's predictor: a name (see
            :func:`optnas.predictors.get_predictor`; None: ``"as"``) or an unfitted predictor,
            cloned and seeded at each step.
        sec_predictor: the predictor of every other quantity that ``costs`` lacks (as ``predictor``).
        trust_radius: candidates differ in at most this many genes from an evaluated
            architecture (None: anywhere), so that predictions are used where they were learnt.
        population_size: NSGA-II population on the surrogate.
        generations: NSGA-II generations on the surrogate.
        exploration: candidates are scored by the quantile of their predictive distribution
            this many standard deviations towards better, by predictors that have
            ``predict_draws`` (an optimistic bound, so that uncertain regions are tried; None: 0).
        plausible: (quantity, predictions) → predictions brought into the quantity's range
            (default: top1 clipped to 0-100, anything else to ≥ 0, as NAS figures are).
        constraint_scales: constraint name → the unit its excess is counted in (default:
            the bound's magnitude, so that constraints in different units weigh alike).
        vector_costs: the same figures as ``costs`` for a whole array of gene vectors at once
            (name → array), where a space can compute them vectorised; the NSGA-II on the
            surrogate scores thousands of offspring per step, too many to profile one by one.
            It is called with the vectors and the names of the figures needed (it may skip others).
        expected: with two objectives, a share of the picks by their hypervolume gain averaged
            over draws of the predictions (draws from predictors that have ``predict_draws``;
            the others' predictions as they are); None: every pick by the optimistic predictions.
    """

    def __init__(
        self,
        space: SearchSpace,
        costs: Callable[[dict[str, Any]], dict[str, float]],
        *,
        objectives: list[str],
        constraint_bounds: dict[str, float],
        predictor: str | Predictor | None = None,
        sec_predictor: str | Predictor | None = None,
        trust_radius: int | None = None,
        population_size: int = 100,
        generations: int = 30,
        exploration: float | None = None,
        plausible: Callable[[str, np.ndarray], np.ndarray] | None = None,
        constraint_scales: dict[str, float] | None = None,
        vector_costs: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None,
        expected: ExpectedGain | None = None,
    ) -> None:
        self.space = space
        self.costs = costs
        self.objectives = list(objectives)
        self.constraint_bounds = dict(constraint_bounds)
        self.predictor = "as" if predictor is None else predictor
        self.sec_predictor = "as" if sec_predictor is None else sec_predictor
        self.trust_radius = trust_radius
        self.exploration = exploration or 0.0
        self.plausible = plausible or _plausible
        self.constraint_scales = dict(constraint_scales or {})
        self.vector_costs = vector_costs
        self.expected = expected
        self._evolution = SurrogateNSGA2(space, population_size, generations)
        self._costs_cache: dict[tuple, dict[str, float]] = {}

    @property
    def quantities(self) -> list[str]:
        """Every figure the objectives and constraints need, objectives first."""
        names = self.objectives + [_quantity(name) for name in self.constraint_bounds]
        return list(dict.fromkeys(names))

    def predicted_quantities(self) -> list[str]:
        """The quantities that are predicted, because ``costs`` does not hold them."""
        exact = self.costs_of(self.space.to_vector(self.space.smallest()))
        return [name for name in self.quantities if name not in exact]

    def costs_of(self, vector: np.ndarray) -> dict[str, float]:
        """Return the exact costs of a gene vector, computed once per architecture.

        Args:
            vector: the gene vector.
        """
        key = tuple(int(v) for v in vector)
        cached = self._costs_cache.get(key)
        if cached is None:
            cached = self.costs(self.space.from_vector(vector))
            self._costs_cache[key] = cached
        return cached

    def _exact(self, vectors: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        """The exact figures ``names`` of every vector, vectorised where the space allows."""
        if not names or len(vectors) == 0:
            return {name: np.zeros(len(vectors)) for name in names}
        if self.vector_costs is not None:
            costs = self.vector_costs(vectors, names)
            return {name: np.asarray(costs[name], dtype=float) for name in names}
        rows = [self.costs_of(vector) for vector in vectors]
        return {name: np.array([row[name] for row in rows], dtype=float) for name in names}

    def __call__(self, evaluated: Evaluated, n: int, seed: int, k: int, first_pick: int = 0) -> Proposal:
        """Return up to ``n`` never-evaluated candidates adding the most predicted hypervolume.

        Args:
            evaluated: the architectures evaluated so far (at least one).
            n: the batch size.
            seed: the search's seed.
            k: the batch index; with ``seed`` it seeds the predictors and the evolution.
            first_pick: the number of the batch's first pick among the search's picks (0: the
                first after the initial design), which says which picks ``expected`` makes.
        """
        started = time.perf_counter()
        trained_on = self.space.features(evaluated.vectors)
        models = self._fit(evaluated, trained_on, random_state=seed + k)
        fit_seconds = time.perf_counter() - started

        def evaluate(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            values = self._predictions(models, vectors, self.exploration)
            return self._minimised(values), self._violation(values)

        feasible = np.flatnonzero(evaluated.feasible)
        judged = self._judged(models, evaluated, trained_on)
        front_values = self._minimised({name: judged[name][feasible] for name in self.quantities})
        front = feasible[front_indices(front_values)]
        initial = evaluated.vectors[front] if len(front) else evaluated.vectors
        rng = np.random.default_rng([seed, k])
        vectors, objectives, violation = self._evolution.run(evaluate, initial, rng)
        # The one-gene neighbours of the evaluated front, scored too: the evolution rarely
        # samples all of them, and they are where the predictor is most trustworthy.
        neighbours = _neighbours(self.space, initial)
        neighbours = neighbours[~np.isin(_keys(neighbours), _keys(vectors))]
        if len(neighbours):
            extra_objectives, extra_violation = evaluate(neighbours)
            vectors = np.concatenate([vectors, neighbours])
            objectives = np.concatenate([objectives, extra_objectives])
            violation = np.concatenate([violation, extra_violation])
        allowed = self._allowed(vectors, evaluated.seen)
        vectors, objectives, violation = vectors[allowed], objectives[allowed], violation[allowed]
        ideal, span = _scale(objectives, front_values)
        credited, reference = _selection_space((objectives - ideal) / span)
        outcomes = None
        expected_picks = 0 if self.expected is None else self.expected.picks(first_pick, n)
        if expected_picks and len(vectors) and len(self.objectives) == 2:
            normal = rng.standard_normal((self.expected.draws, len(vectors)))
            values = self._predictions(models, vectors, normal=normal)
            outcomes = Outcomes(_selection_space((self._minimised(values) - ideal) / span)[0],
                                self._violation(values), expected_picks)
        scaled_front = (front_values.reshape(-1, objectives.shape[1]) - ideal) / span
        chosen = select_batch(credited, violation, n, scaled_front, reference, outcomes) if len(vectors) else []
        chosen_values = (self._predictions(models, vectors[chosen]) if len(chosen)
                         else {name: np.zeros(0) for name in models})
        return Proposal(
            vectors=vectors[chosen],
            predicted={name: chosen_values[name] for name in models},
            predictors={name: getattr(model, "winner_", type(model).__name__) for name, model in models.items()},
            n_train=len(evaluated.vectors),
            fit_seconds=fit_seconds,
            seconds=time.perf_counter() - started,
        )

    def _predictions(self, models: dict[str, Any], vectors: np.ndarray, optimism: float = 0.0,
                     normal: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Every quantity of ``vectors``: the predictions, or their optimistic bounds, or draws.

        Args:
            models: the fitted predictors, by quantity.
            vectors: array (n, n_genes) of gene vectors.
            optimism: with it, a model that draws gives the quantile of its predictive
                distribution this many standard deviations towards better (larger for top1):
                through the posterior's own shape, as a warped posterior is skewed and a
                deviation taken symmetrically would reach as far towards better as its steep
                side reaches towards worse.
            normal: array (s, n) of standard normal numbers: ``s`` draws of every prediction
                (by models that draw; the others' predictions and exact figures in every draw).
        """
        features = self.space.features(vectors)
        shape = (len(vectors),) if normal is None else normal.shape
        values = {}
        for name, model in models.items():
            if normal is not None and hasattr(model, "predict_draws"):
                value = model.predict_draws(features, normal)
            elif optimism > 0 and hasattr(model, "predict_draws"):
                toward = optimism if name == "top1" else -optimism
                value = model.predict_draws(features, np.full((1, len(vectors)), toward))[0]
            else:
                value = model.predict(features)
            values[name] = self.plausible(name, value)
        values.update(self._exact(vectors, [name for name in self.quantities if name not in values]))
        return {name: np.broadcast_to(value, shape) for name, value in values.items()}

    def _fit(self, evaluated: Evaluated, features: np.ndarray, random_state: int) -> dict[str, Any]:
        """One fitted predictor per predicted quantity, on the trials that measured it
        (``features``: the evaluated vectors' features)."""
        # Imported here: the predictors package pulls in torch (the MLP predictor).
        from sklearn.base import clone

        from optnas.predictors import get_predictor

        models = {}
        for name in self.predicted_quantities():
            known = ~np.isnan(evaluated.observed[name])
            kind = self.predictor if name == self.objectives[0] else self.sec_predictor
            model = get_predictor(kind, random_state=random_state) if isinstance(kind, str) else \
                clone(kind).set_params(random_state=random_state)
            models[name] = model.fit(features[known], evaluated.observed[name][known])
        return models

    def _judged(self, models: dict[str, Any], evaluated: Evaluated, features: np.ndarray) -> dict[str, np.ndarray]:
        """The evaluated trials' figures their front is judged by: the measured ones, except where
        the quantity's model estimates its measurements' noise (a fitted ``noise_``): there, its
        posterior means at the trials.

        One lucky measurement (a run of a noisy table, or a point the model can only explain
        as noise) would otherwise set a front that no candidate is predicted to beat, and the
        search would stop refining where it lies; noisy expected improvement judges its
        incumbent by the posterior for the same reason.

        Args:
            models: the fitted predictors, by quantity.
            evaluated: the evaluated trials.
            features: their vectors' features, as the models were fitted on.
        """
        judged = dict(evaluated.observed)
        # Only the objectives make the front; feasibility is the trials' own.
        noisy = [name for name in self.objectives if hasattr(models.get(name), "noise_")]
        for name in noisy:
            known = ~np.isnan(judged[name])
            judged[name] = judged[name].copy()
            judged[name][known] = models[name].predict(features[known])
        return judged

    def _allowed(self, vectors: np.ndarray, done: np.ndarray) -> np.ndarray:
        """Mask of the candidates never evaluated, not dominated by their reduced form, and within the
        trust radius of one that was."""
        allowed = ~self._dominated_by_reduced(vectors)
        if len(vectors) == 0 or len(done) == 0:
            return allowed
        if self.trust_radius is None:
            # Only never evaluated: a lookup, not a distance to every evaluated vector.
            return allowed & ~np.isin(_keys(vectors), _keys(done))
        distance = _hamming_to_nearest(vectors, done)
        return allowed & (distance > 0) & (distance <= self.trust_radius)

    def _dominated_by_reduced(self, vectors: np.ndarray) -> np.ndarray:
        """Mask of the candidates whose reduced form (the same function, unused operations
        removed) costs no more on every exact quantity: it is as accurate and never worse, so
        evaluating the candidate could only waste an evaluation. Where a cost is a measurement
        (a table's latency) the reduced form may cost more, and the candidate is kept."""
        vectors = np.asarray(vectors, dtype=np.int64)
        dominated = np.zeros(len(vectors), dtype=bool)
        if len(vectors) == 0:
            return dominated
        reduced = self.space.reduced(vectors)
        differs = (reduced != vectors).any(axis=1)
        if not differs.any():
            return dominated
        predicted = self.predicted_quantities()
        exact = [name for name in self.quantities if name not in predicted]
        original, cheaper = self._exact(vectors[differs], exact), self._exact(reduced[differs], exact)
        dominated[differs] = np.all([cheaper[name] <= original[name] for name in exact], axis=0) if exact else True
        return dominated

    def _minimised(self, values: dict[str, np.ndarray]) -> np.ndarray:
        columns = [100.0 - values[name] if name == "top1" else values[name] for name in self.objectives]
        return np.stack(columns, axis=-1).astype(float)

    def _violation(self, values: dict[str, np.ndarray]) -> np.ndarray:
        violation = np.zeros(np.shape(values[self.objectives[0]]))
        for name, bound in self.constraint_bounds.items():
            value = values[_quantity(name)]
            excess = bound - value if name == "top1min" else value - bound
            # Relative excess, so constraints in different units weigh alike.
            scale = self.constraint_scales.get(name, max(abs(bound), 1e-12))
            violation += np.maximum(0.0, excess) / scale
        return violation


def _quantity(constraint: str) -> str:
    """The figure a constraint bounds: top1 for ``top1min``, else the constraint's own name."""
    return "top1" if constraint == "top1min" else constraint


def _plausible(name: str, predicted: np.ndarray) -> np.ndarray:
    """Clip predictions to the quantity's range: interpolants can extrapolate past it."""
    return np.clip(predicted, 0.0, 100.0) if name == "top1" else np.maximum(predicted, 0.0)


def _scale(objectives: np.ndarray, front: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the ideal point and the span that scale objectives so the evaluated front spans
    [0, 1] on each axis: ``(objectives - ideal) / span``.

    Hypervolume gains are then comparable along the whole front: in raw units, with a far
    reference point, the cheap end of the front (large errors) would dwarf every gain near the
    accurate end, and batches would pile up on the smallest architectures.

    Args:
        objectives: array (n, m) of candidates' objectives, minimised.
        front: array (p, m) of the evaluated feasible trials' objectives, minimised.
    """
    front = front.reshape(-1, objectives.shape[1])
    if len(front) >= 2:
        basis = front[constrained_ranks(front, np.zeros(len(front))) == 0]
    else:
        basis = np.vstack([front, objectives])
    ideal, nadir = basis.min(axis=0), basis.max(axis=0)
    return ideal, np.where(nadir - ideal > 0, nadir - ideal, 1.0)


def _selection_space(scaled: np.ndarray) -> tuple[np.ndarray, tuple[float, ...]]:
    """The candidates' objectives as the batch selection credits them, and its reference point.

    With two objectives a candidate past the box of the evaluated front (``SCALED_REFERENCE``
    times its span) on one axis counts as on the box's edge, and the reference point lies
    further out (``EXTENDED_REFERENCE``). A candidate better than the front on one objective
    then adds hypervolume however much more it costs on the other. With the reference on the
    edge it would add none: the front could grow past its costliest point by a tenth of its
    span per batch, and where costs come in steps (a network's size jumps with each
    convolution) its accurate end was never reached. With more objectives the batch is chosen
    by rank and distance, which the box would only blur.

    Args:
        scaled: array (..., m) of the candidates' objectives, scaled by :func:`_scale`.
    """
    m = scaled.shape[-1]
    if m != 2:
        return scaled, (SCALED_REFERENCE,) * m
    return np.minimum(scaled, SCALED_REFERENCE), (EXTENDED_REFERENCE,) * m


def _neighbours(space: SearchSpace, vectors: np.ndarray) -> np.ndarray:
    """Every distinct canonical vector one gene away from one of ``vectors``."""
    levels = [len(values) for values in space.choices()]
    rows = []
    for gene, count in enumerate(levels):
        for level in range(count):
            changed = vectors.copy()
            changed[:, gene] = level
            rows.append(changed[vectors[:, gene] != level])
    if not rows:
        return vectors[:0]
    candidates = space.canonical_vectors(np.concatenate(rows))
    return np.unique(candidates, axis=0)


def _hamming_to_nearest(vectors: np.ndarray, others: np.ndarray, block: int = 1024) -> np.ndarray:
    """The number of genes in which each of ``vectors`` differs from the nearest of ``others``,
    in blocks of rows that bound the (block, len(others), n_genes) comparison."""
    return np.concatenate([(vectors[start:start + block, None, :] != others[None]).sum(axis=2).min(axis=1)
                           for start in range(0, len(vectors), block)])


def _keys(vectors: np.ndarray) -> np.ndarray:
    """One opaque value per row (its bytes), so that rows can be compared with ``np.isin``."""
    vectors = np.ascontiguousarray(vectors, dtype=np.int64)
    return vectors.view(np.dtype((np.void, vectors.dtype.itemsize * vectors.shape[1]))).ravel()
