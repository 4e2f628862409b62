"""Surrogate sampler against Optuna's samplers on NAS-Bench-201 (cifar10), true-front hypervolume.

The whole space (15,625 cells) is enumerable, so the true Pareto front of (error %, cost)
is known, the cost being the model size (M params, the default) or the table's latency (ms,
``--cost latency``); each search runs with that cost as its second objective. Each front is
scaled by the true front's ideal and nadir points and measured against the reference point
(1.1, 1.1); results are fractions of the true front's hypervolume.

    python benchmarks/bench_samplers.py [--cost {params,latency}] [--seeds 5] [--budgets 100 200]
                                        [--samplers surrogate nsga2 ...]
                                        [--ranking-only] [--ranking-n 100] [--ranking-predictors xgb ...]

With ``--cost params`` a second table shows how well the predictors rank cells *within* a
model-size level, what the search needs to find each level's best cells (see
:func:`ranking_table`).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from optnas.config import SearchConfig
from optnas.pareto import front_2d, hypervolume_2d
from optnas.predictors import get_predictor, kendall_tau
from optnas.spaces.nasbench201 import (
    N_EDGES,
    OPERATIONS,
    NASBench201Space,
    _bench,
    lookup,
)
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


# The feature columns the sampler used before the path-statistics columns were added.
OLD_FEATURE_COLUMNS = 42


def _pair_tau(predicted: np.ndarray, truth: np.ndarray, groups: list[np.ndarray]) -> float:
    """Kendall's τ over the pairs of cells that share a group: (concordant − discordant) / pairs."""
    score = pairs = 0
    for members in groups:
        upper = np.triu_indices(len(members), 1)
        signs = (np.sign(np.subtract.outer(predicted[members], predicted[members]))
                 * np.sign(np.subtract.outer(truth[members], truth[members])))[upper]
        score += int(np.sign(signs).sum())
        pairs += len(signs)
    return score / pairs


def ranking_table(predictors: list[str], seeds: int, n_train: int = 100) -> None:
    """Print how well predictors trained on ``n_train`` cells rank all 15,625, overall and within size levels.

    The truth is each cell's mean validation accuracy over the table's training seeds; a
    predictor is trained on distinct random cells with the accuracy ``lookup`` draws (one
    training seed, what a search sees). Columns: Kendall's τ over all cells; τ over the pairs
    of cells of one model-size level (28 levels); the same over the pairs whose both cells
    are among the 10 % most accurate of their level (the cells a search must tell apart to
    find each level's front point). The first row is the drawn accuracies themselves: the
    noise of one training seed bounds what a predictor of them can reach.
    """
    cells = np.array(list(itertools.product(range(len(OPERATIONS)), repeat=N_EDGES)))
    space = NASBench201Space()
    bench = _bench("cifar10")
    names = bench._dataset_properties.search_space["Op0"]
    truth = np.array([
        np.mean(bench._dataset["".join(str(names.index(OPERATIONS[op])) for op in cell)]["val_acc"])
        for cell in cells
    ])
    size = np.array([lookup(space.from_vector(cell), "cifar10", 0)["params"] for cell in cells])
    levels = [np.flatnonzero(size == value) for value in np.unique(size)]
    tops = [level[np.argsort(-truth[level])[: int(np.ceil(0.1 * len(level)))]] for level in levels]
    tops = [top for top in tops if len(top) >= 2]
    features = space.features(cells)
    print(f"\nRanking of all {len(cells):,} cells by predictors trained on {n_train} random cells "
          f"(cifar10, mean over {seeds} seeds ± std)")
    print(f"{'predictor':24s} {'τ overall':>14s} {'τ within level':>15s} {'τ top 10 % of level':>20s}")
    rows: list[tuple[str, Any]] = [("one seed's accuracies", None)]
    rows += [(f"{name}, old features", (name, OLD_FEATURE_COLUMNS)) for name in predictors]
    rows += [(name, (name, None)) for name in predictors]
    # What a search sees of every cell, per seed: drawn once, shared by every row.
    drawn_by_seed = [np.array([lookup(space.from_vector(cell), "cifar10", seed)["top1"] for cell in cells])
                     for seed in range(seeds)]
    for label, model in rows:
        figures = []
        for seed, drawn in enumerate(drawn_by_seed):
            if model is None:
                predicted = drawn
            else:
                name, columns = model
                used = features[:, :columns]
                train = np.random.default_rng([seed, 100]).choice(len(cells), n_train, replace=False)
                predicted = get_predictor(name, random_state=seed).fit(used[train], drawn[train]).predict(used)
            figures.append((kendall_tau(truth, predicted), _pair_tau(predicted, truth, levels),
                            _pair_tau(predicted, truth, tops)))
        mean, std = np.mean(figures, axis=0), np.std(figures, axis=0)
        # Not named ``cells``: the next row draws its training cells from that array.
        formatted = (f"{m:.3f} ± {s:.3f}".rjust(w) for m, s, w in zip(mean, std, (14, 15, 20)))
        print(f"{label:24s} " + " ".join(formatted), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budgets", type=int, nargs="+", default=[100, 200])
    parser.add_argument("--samplers", nargs="+", default=["surrogate", "nsga2", "tpe", "gp", "random"])
    parser.add_argument("--predictor", default="as")
    parser.add_argument("--cost", choices=COSTS, default="params",
                        help="second objective: model size (M params) or the table's latency (ms)")
    parser.add_argument("--ranking-only", action="store_true", help="print the ranking table only")
    parser.add_argument("--ranking-predictors", nargs="+", default=["as", "xgb", "carts", "gp"])
    parser.add_argument("--ranking-n", type=int, default=100, help="cells the ranking table's predictors train on")
    args = parser.parse_args()
    if args.ranking_only:
        ranking_table(args.ranking_predictors, args.seeds, args.ranking_n)
        return
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
    if args.cost == "params":
        ranking_table(args.ranking_predictors, args.seeds, args.ranking_n)


if __name__ == "__main__":
    main()
