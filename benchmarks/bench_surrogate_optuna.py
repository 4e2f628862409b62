"""SurrogateSampler in a plain Optuna study against Optuna's samplers, on NAS-Bench-201 (cifar10).

No optnas search here: the objective is a user's own function of six categorical
``suggest_categorical`` calls (one operation per edge) returning (top1 %, M params) from the
table (``optnas.spaces.nasbench201.lookup``, offline), maximised and minimised. The
surrogate gets ``exact={1: params}`` (model size follows from the encoding) in the
``sur-exact`` row and predicts both objectives in the ``surrogate`` row (both with
``--predictor``, rbf by default). Results are
fractions of the true front's hypervolume, as in ``bench_samplers.py``.

Time (issue 26, item 3), measured side by side in the same run: every sampler's Optuna
hooks (``infer_relative_search_space``, ``sample_relative``, ``sample_independent``,
``before_trial``, ``after_trial``) are timed per trial by wrapping them on the instance
(:class:`SamplerClock`; the sampler itself is unchanged). Printed per sampler: wall and
sampler seconds per 100 trials, and the sampler's time per *step* over the trials after the
first ``N_DOE``: for the surrogate a step is the trial that computes a batch (its
``sample_relative`` runs the batch's fit and search; the other trials of the batch read it),
for every other sampler each trial is a step (GPSampler fits its GP and optimises log-EHVI
for every trial).

    python benchmarks/bench_surrogate_optuna.py [--seeds 3] [--budgets 50 100]
                                                [--samplers sur-exact surrogate gp nsga2 tpe random]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import optuna
from bench_samplers import hv_fraction, table_header, table_row, true_front

from optnas.samplers import SurrogateSampler
from optnas.samplers.surrogate import BATCH_ATTR_PREFIX
from optnas.spaces.nasbench201 import N_EDGES, OPERATIONS, lookup

SAMPLERS = ("sur-exact", "surrogate", "gp", "nsga2", "tpe", "random")
# The trials of the initial design (surrogate) and of random start-up (GP, TPE).
N_DOE = 20
N_ITER = 10
HOOKS = ("infer_relative_search_space", "sample_relative", "sample_independent", "before_trial", "after_trial")


def make_sampler(name: str, seed: int, table_seed: int, predictor: str) -> optuna.samplers.BaseSampler:
    """One sampler, as a user would build it."""
    if name in ("sur-exact", "surrogate"):
        def exact(params: dict[str, Any]) -> dict[int, float]:
            return {1: lookup(_subnet(params), "cifar10", table_seed)["params"]}

        return SurrogateSampler(n_doe=N_DOE, n_iter=N_ITER, seed=seed, predictor=predictor, sec_predictor=predictor,
                                exact=exact if name == "sur-exact" else None)
    if name == "gp":
        # Optuna 5's GP sampler: log-EHVI with two objectives; start-up as optnas's ``--sampler gp``.
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=N_DOE)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=N_ITER, seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=N_DOE)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}")


class SamplerClock:
    """Seconds a sampler spends in its Optuna hooks, per trial number.

    The hooks are wrapped on the instance, so the study calls the sampler as before and the
    sampler's own code runs unchanged; a hook that calls another (wrapped) hook is counted once.

    Args:
        sampler: the sampler to time.
    """

    def __init__(self, sampler: optuna.samplers.BaseSampler) -> None:
        self.seconds: defaultdict[int, float] = defaultdict(float)
        self._depth = 0
        for hook in HOOKS:
            setattr(sampler, hook, self._timed(getattr(sampler, hook)))

    def _timed(self, call: Callable[..., Any]) -> Callable[..., Any]:
        def timed(study: optuna.Study, trial: Any, *args: Any, **kwargs: Any) -> Any:
            self._depth += 1
            started = time.perf_counter()
            try:
                return call(study, trial, *args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.seconds[trial.number] += time.perf_counter() - started
        return timed


def step_seconds(name: str, study: optuna.Study, clock: SamplerClock) -> list[float]:
    """The sampler's seconds per step over the trials after the first ``N_DOE``.

    A surrogate's steps are the trials that computed a stored batch (batch k is computed by
    trial ``N_DOE + (k - 1) * N_ITER``, the first that needs it); every other sampler's are all
    those trials.
    """
    if name in ("sur-exact", "surrogate"):
        batches = sorted(int(key.removeprefix(BATCH_ATTR_PREFIX))
                         for key in study.user_attrs if key.startswith(BATCH_ATTR_PREFIX))
        return [clock.seconds[N_DOE + (k - 1) * N_ITER] for k in batches]
    return [seconds for number, seconds in clock.seconds.items() if number >= N_DOE]


def time_cells(wall: list[float], sampler: list[float], steps: list[float], budget: int) -> str:
    """Time columns: median wall and sampler seconds per 100 trials; steps: count, median (max) s."""
    per_100 = 100 / budget
    return (f"{statistics.median(wall) * per_100:9.1f} {statistics.median(sampler) * per_100:9.1f} "
            f"{len(steps):6d} {statistics.median(steps):8.3f} ({max(steps):.3f})")


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
    time_header = f" {'wall/100':>9s} {'sampl/100':>9s} {'steps':>6s} {'step s median (max)':>19s}"
    print(table_header(args.budgets) + time_header)
    for name in args.samplers:
        fractions: dict[int, list[float]] = {b: [] for b in args.budgets}
        seconds: list[float] = []
        sampler_seconds: list[float] = []
        steps: list[float] = []
        for seed in range(args.seeds):
            ideal, nadir, true_hv = true_front("cifar10", seed)

            def objective(trial: optuna.Trial, table_seed: int = seed) -> tuple[float, float]:
                params = {f"op{edge}": trial.suggest_categorical(f"op{edge}", OPERATIONS) for edge in range(N_EDGES)}
                figures = lookup(_subnet(params), "cifar10", table_seed)
                return figures["top1"], figures["params"]

            sampler = make_sampler(name, seed, seed, args.predictor)
            clock = SamplerClock(sampler)
            study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
            started = time.perf_counter()
            study.optimize(objective, n_trials=budget)
            seconds.append(time.perf_counter() - started)
            sampler_seconds.append(sum(clock.seconds.values()))
            steps += step_seconds(name, study, clock)
            for b in args.budgets:
                fractions[b].append(hv_fraction(study, b, ideal, nadir, true_hv))
        print(table_row(name, fractions, seconds), time_cells(seconds, sampler_seconds, steps, budget), flush=True)
    print("HV: median over seeds (min); seconds: median wall time of a whole search; wall/100, sampl/100: median "
          f"seconds per 100 trials of the search and of the sampler's hooks; steps (all seeds) after trial {N_DOE}: "
          "a surrogate's batch computations, every other sampler's trials")


if __name__ == "__main__":
    main()
