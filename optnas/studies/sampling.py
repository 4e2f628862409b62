"""The sampler a search configuration names: the surrogate-assisted NSGA-II or an Optuna baseline."""

from __future__ import annotations

import functools

import optuna

from optnas.config import SearchConfig
from optnas.evaluation.costs import exact_costs, exact_costs_vectors
from optnas.samplers.strategies import NASStrategy
from optnas.samplers.surrogate import SurrogateSampler


def make_sampler(config: SearchConfig) -> optuna.samplers.BaseSampler:
    """Return the sampler a configuration names, seeded from it.

    Args:
        config: the search configuration.
    """
    seed = config.seed
    if config.sampler == "surrogate":
        costs = config.cost_options()
        return SurrogateSampler(
            strategy=NASStrategy(
                costs.space,
                functools.partial(exact_costs, costs),
                # None where the space has no vectorised costs: the offspring are then costed one by one.
                vector_costs=exact_costs_vectors(costs),
                objectives=config.objectives,
                constraint_bounds=config.constraint_bounds,
            ),
            n_doe=config.n_doe,
            n_iter=config.n_iter,
            predictor=config.predictor,
            sec_predictor=config.sec_predictor,
            trust_radius=config.trust_radius or None,
            seed=seed,
        )
    if config.sampler == "nsga2":
        # One generation per iteration, so generations and iterations line up.
        return optuna.samplers.NSGAIISampler(population_size=max(2, config.n_iter), seed=seed)
    if config.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=config.n_doe)
    if config.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=config.n_doe)
    if config.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {config.sampler!r}")
