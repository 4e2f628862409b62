"""Surrogate sampler against Optuna's samplers on NAS-Bench-201 (cifar10), true-front hypervolume.

The whole space (15,625 cells) is enumerable, so the true Pareto front of (error %, cost)
is known, the cost being the model size (M params, the default) or the table's latency (ms,
``--cost latency``); each search runs with that cost as its second objective. Each front is
scaled by the true front's ideal and nadir points and measured against the reference point
(1.1, 1.1); results are fractions of the true front's hypervolume.

    python benchmarks/bench_samplers.py [--cost {params,latency}] [--seeds 5] [--budgets 100 200]
                                        [--samplers surrogate nsga2 ...]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from optnas.config import SearchConfig
from optnas.pareto import front_2d, hypervolume_2d
from optnas.spaces.nasbench201 import N_EDGES, OPERATIONS, lookup
from optnas.studies.search import start_search

REFERENCE = (1.1, 1.1)
COSTS = ("params", "latency")


def true_front(dataset: str, seed: int, cost: str = "params") -> tuple[np.ndarray, np.ndarray, float]:
    """Return the ideal and nadir points of the true (error %, ``cost``) front and its scaled hypervolume."""
    points = np.array([
        [100.0 - figures["top1"], figures[cost]]
        for figures in (lookup({"ops": list(ops)}, dataset, seed)
                        for ops in itertools.product(OPERATIONS, repeat=N_EDGES))
    ])
    front = front_2d(points)
    ideal, nadir = front.min(axis=0), front.max(axis=0)
    return ideal, nadir, hypervolume_2d((front - ideal) / (nadir - ideal), REFERENCE)


def run(sampler: str, seed: int, budget: int, predictor: str, folder: Path,
        cost: str = "params") -> tuple[optuna.Study, float]:
    """Run one search with ``cost`` as its second objective; return the study and its wall time."""
    n_doe = min(20, budget)
    config = SearchConfig(
        search_space="nasbench201", dataset="cifar10", sec_obj=cost, sampler=sampler,
        predictor=predictor, n_doe=n_doe, n_iter=10, iterations=(budget - n_doe) // 10, seed=seed,
        save=str(folder / "run"),
    ).validate()
    started = time.perf_counter()
    study = start_search(config, f"sqlite:///{folder / 'bench.db'}", progress=False)
    return study, time.perf_counter() - started


def first_points(study: optuna.Study, budget: int) -> np.ndarray:
    """(error %, second objective) of the first ``budget`` completed trials, by trial number."""
    complete = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    return np.array([[100.0 - t.values[0], t.values[1]] for t in complete[:budget]])


def hv_fraction(study: optuna.Study, budget: int, ideal: np.ndarray, nadir: np.ndarray, true_hv: float) -> float:
    """Hypervolume of the first ``budget`` completed trials, as a fraction of the true front's."""
    return hypervolume_2d((first_points(study, budget) - ideal) / (nadir - ideal), REFERENCE) / true_hv


def table_header(budgets: list[int]) -> str:
    """The header line of a sampler table."""
    return f"{'sampler':10s} " + " ".join(f"{'HV@' + str(b):>14s}" for b in budgets) + f" {'seconds':>9s}"


def table_row(sampler: str, fractions: dict[int, list[float]], seconds: list[float], decimals: int = 3) -> str:
    """One sampler's line: median (min) hypervolume per budget, median seconds per search."""
    cells = " ".join(
        f"{statistics.median(v):.{decimals}f} ({min(v):.{decimals}f})".rjust(14) for v in fractions.values()
    )
    return f"{sampler:10s} {cells} {statistics.median(seconds):9.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budgets", type=int, nargs="+", default=[100, 200])
    parser.add_argument("--samplers", nargs="+", default=["surrogate", "nsga2", "tpe", "gp", "random"])
    parser.add_argument("--predictor", default="as")
    parser.add_argument("--cost", choices=COSTS, default="params",
                        help="second objective: model size (M params) or the table's latency (ms)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    budget = max(args.budgets)
    print(table_header(args.budgets))
    for sampler in args.samplers:
        fractions = {b: [] for b in args.budgets}
        seconds = []
        for seed in range(args.seeds):
            ideal, nadir, true_hv = true_front("cifar10", seed, args.cost)
            with tempfile.TemporaryDirectory() as folder:
                study, elapsed = run(sampler, seed, budget, args.predictor, Path(folder), args.cost)
                for b in args.budgets:
                    fractions[b].append(hv_fraction(study, b, ideal, nadir, true_hv))
            seconds.append(elapsed)
        print(table_row(sampler, fractions, seconds), flush=True)
    print("HV: median over seeds (min); seconds: median wall time of a whole search")


if __name__ == "__main__":
    main()
