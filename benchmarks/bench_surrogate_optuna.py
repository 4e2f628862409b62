"""SurrogateSampler in a plain Optuna study against Optuna's samplers, on NAS-Bench-201 (cifar10).

No optnas search here: the objective is a user's own function of six categorical
``suggest_categorical`` calls (one operation per edge) returning (top1 %, M params) from the
table (``optnas.spaces.nasbench201.lookup``, offline), maximised and minimised. The
surrogate gets ``exact={1: params}`` (model size follows from the encoding) in the
``sur-exact`` row and predicts both objectives in the ``surrogate`` row (both with
``--predictor``, rbf by default). Results are
fractions of the true front's hypervolume, as in ``bench_samplers.py``.

    python benchmarks/bench_surrogate_optuna.py [--seeds 3] [--budgets 50 100]
                                                [--samplers sur-exact surrogate nsga2 tpe random]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import optuna
from bench_samplers import hv_fraction, table_header, table_row, true_front

from optnas.samplers import SurrogateSampler
from optnas.spaces.nasbench201 import N_EDGES, OPERATIONS, lookup

SAMPLERS = ("sur-exact", "surrogate", "nsga2", "tpe", "random")


def make_sampler(name: str, seed: int, table_seed: int, predictor: str) -> optuna.samplers.BaseSampler:
    """One sampler, as a user would build it."""
    if name in ("sur-exact", "surrogate"):
        def exact(params: dict[str, Any]) -> dict[int, float]:
            return {1: lookup(_subnet(params), "cifar10", table_seed)["params"]}

        return SurrogateSampler(n_doe=20, n_iter=10, seed=seed, predictor=predictor, sec_predictor=predictor,
                                exact=exact if name == "sur-exact" else None)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=10, seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=20)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}")


def _subnet(params: dict[str, Any]) -> dict[str, Any]:
    return {"ops": [params[f"op{edge}"] for edge in range(N_EDGES)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 100])
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    parser.add_argument("--predictor", default="rbf", help="the surrogate's predictor of every objective")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    budget = max(args.budgets)
    print(table_header(args.budgets))
    for name in args.samplers:
        fractions: dict[int, list[float]] = {b: [] for b in args.budgets}
        seconds = []
        for seed in range(args.seeds):
            ideal, nadir, true_hv = true_front("cifar10", seed)

            def objective(trial: optuna.Trial, table_seed: int = seed) -> tuple[float, float]:
                params = {f"op{edge}": trial.suggest_categorical(f"op{edge}", OPERATIONS) for edge in range(N_EDGES)}
                figures = lookup(_subnet(params), "cifar10", table_seed)
                return figures["top1"], figures["params"]

            study = optuna.create_study(directions=["maximize", "minimize"],
                                        sampler=make_sampler(name, seed, seed, args.predictor))
            started = time.perf_counter()
            study.optimize(objective, n_trials=budget)
            seconds.append(time.perf_counter() - started)
            for b in args.budgets:
                fractions[b].append(hv_fraction(study, b, ideal, nadir, true_hv))
        print(table_row(name, fractions, seconds), flush=True)
    print("HV: median over seeds (min); seconds: median wall time of a whole search")


if __name__ == "__main__":
    main()
