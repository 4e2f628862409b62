"""The plain-form benchmark: its seed range, its seeds run in processes, its bootstrap lead of one median."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import optuna
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_surrogate_optuna
        import plain_problems
    finally:
        sys.path.remove(str(BENCHMARKS))
    return bench_surrogate_optuna, plain_problems


def _lead(text: str) -> tuple[float, float, float, int, int]:
    """(difference, low, high, seeds ahead, seeds) from a median_lead string."""
    difference, rest = text.split(" [", 1)
    interval, ahead = rest.split("], ahead on ")
    low, high = interval.split(", ")
    won, seeds = ahead.removesuffix(" seeds").split("/")
    return float(difference), float(low), float(high), int(won), int(seeds)


def test_a_clear_lead_has_an_interval_above_zero(bench) -> None:
    module, _ = bench
    theirs = list(np.random.default_rng(1).uniform(0.90, 0.95, 30))
    ours = [value + 0.05 for value in theirs]
    difference, low, high, won, seeds = _lead(module.median_lead(ours, theirs))
    assert difference == pytest.approx(0.05, abs=1e-4)
    assert 0 < low <= difference <= high
    assert (won, seeds) == (30, 30)


def test_two_draws_of_one_distribution_have_an_interval_around_zero(bench) -> None:
    module, _ = bench
    values = np.random.default_rng(2).uniform(0.90, 0.99, 40)
    ours, theirs = list(values[:20]), list(values[20:])
    difference, low, high, won, seeds = _lead(module.median_lead(ours, theirs))
    assert difference == pytest.approx(np.median(ours) - np.median(theirs), abs=1e-4)
    assert low < 0 < high
    assert won == sum(a > b for a, b in zip(ours, theirs)) and seeds == 20


def _random_search(problems, seed: int, n_trials: int) -> float:
    """HV fraction of Optuna's RandomSampler, seeded ``seed``, on NAS-Bench-201 cifar10 for that seed."""
    problem = problems.make_problem("nb201-cifar10", seed)
    study = optuna.create_study(directions=problem.directions, sampler=optuna.samplers.RandomSampler(seed=seed))
    study.optimize(problem.objective, n_trials=n_trials)
    return problem.hv_fraction(study, n_trials)


@pytest.mark.parametrize("jobs", [1, 2])
def test_first_seed_runs_the_seeds_from_it(bench, monkeypatch, capsys, jobs: int) -> None:
    module, problems = bench
    # Worker processes import the benchmark by name, from the path they inherit.
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setattr(sys, "argv", ["bench", "--seeds", "2", "--first-seed", "3", "--budgets", "12",
                                      "--samplers", "random", "--problems", "nb201-cifar10", "--jobs", str(jobs)])
    module.main()
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("random"))
    printed = [float(value) for value in row.split()[-2:]]
    # The same searches built here, with Optuna's RandomSampler seeded 3 and 4.
    expected = [_random_search(problems, seed, 12) for seed in (3, 4)]
    assert printed == pytest.approx(expected, abs=5e-4)
    # Seed 0 searches differently: the printed values tell the seeds apart.
    assert _random_search(problems, 0, 12) != pytest.approx(expected[0], abs=5e-4)


@pytest.mark.parametrize("name", ["wfg2", "wfg4"])
def test_wfg_front_is_reached_at_the_distance_optimum_and_only_there(bench, name: str) -> None:
    _, problems = bench
    problem = problems.make_problem(name, 0)

    def study_of(distance: float) -> optuna.Study:
        """Positions on a grid, every distance parameter at ``distance`` of its range [0, 2i]."""
        study = optuna.create_study(directions=problem.directions)
        for position in np.linspace(0.0, 1.0, 101):
            study.enqueue_trial({f"x{i}": (position if i < 2 else distance) * 2 * (i + 1) for i in range(6)})
        study.optimize(problem.objective, n_trials=101)
        return study

    # WFG's distance transformations are 0 at 0.35 and 1 at both ends of their range.
    assert problem.hv_fraction(study_of(0.35), 101) == pytest.approx(1.0, abs=0.02)
    assert problem.hv_fraction(study_of(0.0), 101) < 0.8
    assert problem.hv_fraction(study_of(1.0), 101) < 0.8
    values = np.array([trial.values for trial in study_of(0.35).trials])
    if name == "wfg4":
        # The concave front: a quarter ellipse with semi-axes 2 and 4.
        np.testing.assert_allclose((values[:, 0] / 2) ** 2 + (values[:, 1] / 4) ** 2, 1.0, atol=1e-9)
    else:
        # The convex part: f1 = 2 (1 - cos(pi x / 2)) at position x.
        np.testing.assert_allclose(values[:, 0], 2 * (1 - np.cos(np.linspace(0, 1, 101) * np.pi / 2)), atol=1e-9)
