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
from optnas.pareto import constrained_ranks, front_indices
from optnas.samplers.evolution import SurrogateNSGA2
from optnas.samplers.selection import select_batch
from optnas.spaces import SearchSpace

BATCH_ATTR_PREFIX = "surrogate:batch:"
# Reference point of the batch selection's hypervolume, on objectives scaled to the evaluated
# front (ideal 0, nadir 1 on each axis).
SCALED_REFERENCE = 1.1
_FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


class SurrogateSampler(BaseSampler):
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
        n_doe: trials of the initial design.
        n_iter: candidates per batch.
        predictor: the first objective's predictor (see :func:`optnas.predictors.get_predictor`).
        sec_predictor: the predictor of every other quantity that ``costs`` lacks.
        trust_radius: candidates differ in at most this many genes from an evaluated
            architecture (None: anywhere), so that predictions are used where they were learnt.
        seed: seed of the design, the predictors and the evolution.
        population_size: NSGA-II population on the surrogate.
        generations: NSGA-II generations on the surrogate.
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
        self.costs = costs
        self.objectives = list(objectives)
        self.constraint_bounds = dict(constraint_bounds)
        self.n_doe = n_doe
        self.n_iter = n_iter
        self.predictor = predictor
        self.sec_predictor = sec_predictor
        self.trust_radius = trust_radius
        self.seed = seed
        self.poll_seconds = poll_seconds
        self._evolution = SurrogateNSGA2(space, population_size, generations)
        self._fallback = RandomSampler(seed=seed)
        self._design: np.ndarray | None = None
        self._batches: dict[int, dict[str, Any]] = {}
        self._costs_cache: dict[tuple, dict[str, float]] = {}
        self._lock = threading.Lock()

    @property
    def quantities(self) -> list[str]:
        """Every figure the objectives and constraints need, objectives first."""
        names = self.objectives + [_quantity(name) for name in self.constraint_bounds]
        return list(dict.fromkeys(names))

    def predicted_quantities(self) -> list[str]:
        """The quantities that are predicted, because ``costs`` does not hold them."""
        exact = self._costs_of(self.space.to_vector(self.space.smallest()))
        return [name for name in self.quantities if name not in exact]

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
        models = {}
        for name in self.predicted_quantities():
            known = [t for t in evaluated if name in t.user_attrs]
            X = self.space.features(np.array([self.space.to_vector(t.user_attrs["subnet"]) for t in known]))
            kind = self.predictor if name == self.objectives[0] else self.sec_predictor
            models[name] = get_predictor(kind, random_state=self.seed + k).fit(
                X, np.array([float(t.user_attrs[name]) for t in known])
            )
        fit_seconds = time.perf_counter() - started

        def predict(vectors: np.ndarray) -> dict[str, np.ndarray]:
            features = self.space.features(vectors)
            values = {name: _plausible(name, model.predict(features)) for name, model in models.items()}
            costs = [self._costs_of(vector) for vector in vectors]
            for name in self.quantities:
                if name not in values:
                    values[name] = np.array([c[name] for c in costs], dtype=float)
            return values

        def evaluate(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            values = predict(vectors)
            return self._minimised(values), self._violation(values)

        feasible = [t for t in evaluated if all(v <= 0 for v in t.constraints.values())]
        observed = self._observed(feasible)
        front_values = self._minimised(observed) if feasible else np.zeros((0, len(self.objectives)))
        front = front_indices(front_values)
        initial = np.array([self.space.to_vector(t.user_attrs["subnet"])
                            for t in ([feasible[i] for i in front] or evaluated)])
        rng = np.random.default_rng([self.seed, k])
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
        allowed = self._allowed(vectors, history)
        vectors, objectives, violation = vectors[allowed], objectives[allowed], violation[allowed]
        scaled, scaled_front = _normalise(objectives, front_values)
        chosen = select_batch(
            scaled, violation, self.n_iter, scaled_front, (SCALED_REFERENCE,) * objectives.shape[1]
        ) if len(vectors) else []
        chosen_values = predict(vectors[chosen]) if len(chosen) else {name: [] for name in models}
        return {
            "iteration": k,
            "subnets": [self.space.from_vector(vectors[i]) for i in chosen],
            "predicted": {name: [float(v) for v in chosen_values[name]] for name in models},
            "predictors": {name: getattr(model, "winner_", type(model).__name__) for name, model in models.items()},
            "first_objective": self.objectives[0],
            "n_train": len(evaluated),
            "fit_seconds": round(fit_seconds, 4),
            "seconds": round(time.perf_counter() - started, 4),
        }

    def _allowed(self, vectors: np.ndarray, history: list[FrozenTrial]) -> np.ndarray:
        """Mask of the candidates never evaluated and within the trust radius of one that was."""
        done = np.array([self.space.to_vector(t.user_attrs["subnet"]) for t in history])
        if len(vectors) == 0 or len(done) == 0:
            return np.ones(len(vectors), dtype=bool)
        distance = np.array([(done != vector).sum(axis=1).min() for vector in vectors])
        allowed = distance > 0
        if self.trust_radius is not None:
            allowed &= distance <= self.trust_radius
        return allowed

    def _costs_of(self, vector: np.ndarray) -> dict[str, float]:
        key = tuple(int(v) for v in vector)
        cached = self._costs_cache.get(key)
        if cached is None:
            cached = self.costs(self.space.from_vector(vector))
            self._costs_cache[key] = cached
        return cached

    def _observed(self, trials: list[FrozenTrial]) -> dict[str, np.ndarray]:
        return {name: np.array([float(t.user_attrs[name]) for t in trials]) for name in self.quantities}

    def _minimised(self, values: dict[str, np.ndarray]) -> np.ndarray:
        columns = [100.0 - values[name] if name == "top1" else values[name] for name in self.objectives]
        return np.column_stack(columns).astype(float)

    def _violation(self, values: dict[str, np.ndarray]) -> np.ndarray:
        violation = np.zeros(len(values[self.objectives[0]]))
        for name, bound in self.constraint_bounds.items():
            value = values[_quantity(name)]
            excess = bound - value if name == "top1min" else value - bound
            # Relative excess, so constraints in different units weigh alike.
            violation += np.maximum(0.0, excess) / max(abs(bound), 1e-12)
        return violation


def _quantity(constraint: str) -> str:
    """The figure a constraint bounds: top1 for ``top1min``, else the constraint's own name."""
    return "top1" if constraint == "top1min" else constraint


def _plausible(name: str, predicted: np.ndarray) -> np.ndarray:
    """Clip predictions to the quantity's range: interpolants can extrapolate past it."""
    return np.clip(predicted, 0.0, 100.0) if name == "top1" else np.maximum(predicted, 0.0)


def _normalise(objectives: np.ndarray, front: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale objectives so the evaluated front spans [0, 1] on each axis.

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
    span = np.where(nadir - ideal > 0, nadir - ideal, 1.0)
    return (objectives - ideal) / span, (front - ideal) / span


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


def _keys(vectors: np.ndarray) -> np.ndarray:
    """One string per row, so that rows can be compared with ``np.isin``."""
    return np.array([",".join(map(str, row)) for row in np.asarray(vectors, dtype=np.int64)])


def batch_quality(study: Study) -> dict[int, dict[str, Any]]:
    """Return, per stored batch, its predictors' out-of-sample Kendall τ and RMSE on it.

    Each batch was predicted before it was evaluated, so these are honest figures. Per
    iteration: ``quantity`` (the first objective's figure, or the first predicted one),
    ``kendall_tau``, ``rmse``, ``n`` and ``winner`` for it, and the same under ``sec`` for
    every other predicted quantity.

    Args:
        study: the study.
    """
    actual: dict[str, dict[str, Any]] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if "subnet" in trial.user_attrs:
            actual.setdefault(json.dumps(trial.user_attrs["subnet"], sort_keys=True), trial.user_attrs)
    quality = {}
    for key, batch in study.user_attrs.items():
        if not key.startswith(BATCH_ATTR_PREFIX) or not batch.get("predicted"):
            continue
        figures = {
            name: _prediction_quality(batch, name, actual) for name in batch["predicted"]
        }
        figures = {name: value for name, value in figures.items() if value is not None}
        main = batch["first_objective"] if batch["first_objective"] in figures else next(iter(figures), None)
        if main is not None:
            quality[batch["iteration"]] = {
                "quantity": main, **figures.pop(main), **({"sec": figures} if figures else {})
            }
    return quality


def _prediction_quality(batch: dict[str, Any], name: str, actual: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    from optnas.predictors import kendall_tau, rmse

    pairs = []
    for subnet, predicted in zip(batch["subnets"], batch["predicted"][name]):
        attrs = actual.get(json.dumps(subnet, sort_keys=True))
        if attrs is not None and name in attrs:
            pairs.append((predicted, float(attrs[name])))
    if len(pairs) < 2:
        return None
    predicted, observed = map(np.array, zip(*pairs))
    return {
        "kendall_tau": float(kendall_tau(observed, predicted)),
        "rmse": float(rmse(observed, predicted)),
        "n": len(pairs),
        "winner": batch.get("predictors", {}).get(name),
    }
