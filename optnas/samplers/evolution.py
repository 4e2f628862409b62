"""NSGA-II on integer gene vectors, run on the surrogate (predicted accuracy, exact costs).

Split like Optuna's ``samplers/nsgaii``: an elite selection strategy and a child generation
strategy behind :class:`SurrogateNSGA2`; ranks and crowding come from :mod:`optnas.pareto`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from optnas.pareto import rank_and_crowding
from optnas.spaces import SearchSpace

# (vectors) -> (objectives to minimise, shape (n, m); constraint violation, shape (n,), 0 = feasible)
Evaluate = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class EliteSelection:
    """Keeps the best ``size`` individuals by rank, breaking the last front by crowding."""

    def __call__(self, objectives: np.ndarray, violation: np.ndarray, size: int) -> np.ndarray:
        """Return the indices of the survivors.

        Args:
            objectives: array (n, m), minimised.
            violation: array (n,).
            size: how many survive.
        """
        ranks, crowding = rank_and_crowding(objectives, violation)
        order = np.lexsort((-crowding, ranks))
        return order[:size]


class ChildGeneration:
    """Binary tournaments, uniform crossover and random-reset mutation on gene indices.

    Args:
        levels: the number of values of every gene.
        crossover_prob: probability that a child mixes two parents.
        mutation_prob: per-gene probability of a random reset (default ``1 / n_genes``).
    """

    def __init__(self, levels: list[int], crossover_prob: float = 0.9, mutation_prob: float | None = None) -> None:
        self.levels = np.asarray(levels)
        self.crossover_prob = crossover_prob
        self.mutation_prob = mutation_prob if mutation_prob is not None else 1.0 / len(levels)

    def __call__(
        self, rng: np.random.Generator, parents: np.ndarray, ranks: np.ndarray, crowding: np.ndarray, n: int
    ) -> np.ndarray:
        """Return ``n`` children of ``parents``.

        Args:
            rng: the random generator.
            parents: array (p, n_genes).
            ranks: the parents' ranks.
            crowding: the parents' crowding distances.
            n: the number of children.
        """
        first = self._tournament(rng, ranks, crowding, n)
        second = self._tournament(rng, ranks, crowding, n)
        mix = rng.random((n, parents.shape[1])) < 0.5
        crossed = rng.random(n) < self.crossover_prob
        children = np.where(mix & crossed[:, None], parents[second], parents[first])
        mutate = rng.random(children.shape) < self.mutation_prob
        resets = (rng.random(children.shape) * self.levels).astype(np.int64)
        return np.where(mutate, resets, children)

    @staticmethod
    def _tournament(rng: np.random.Generator, ranks: np.ndarray, crowding: np.ndarray, n: int) -> np.ndarray:
        a, b = rng.integers(len(ranks), size=(2, n))
        a_wins = (ranks[a] < ranks[b]) | ((ranks[a] == ranks[b]) & (crowding[a] >= crowding[b]))
        return np.where(a_wins, a, b)


class SurrogateNSGA2:
    """NSGA-II over a search space's gene vectors, scored by a cheap ``evaluate`` function.

    Args:
        space: the search space (for levels and canonical forms).
        population_size: individuals per generation.
        generations: generations to run.
        crossover_prob: probability that a child mixes two parents.
    """

    def __init__(self, space: SearchSpace, population_size: int = 100, generations: int = 30,
                 crossover_prob: float = 0.9) -> None:
        self.space = space
        self.population_size = population_size
        self.generations = generations
        self.select_elite = EliteSelection()
        self.generate_children = ChildGeneration([len(v) for v in space.choices()], crossover_prob)

    def run(
        self, evaluate: Evaluate, initial: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Evolve from ``initial`` and return every distinct individual seen with its scores.

        Returns ``(vectors, objectives, violation)``: the candidates a batch is chosen from.

        Args:
            evaluate: scores vectors (objectives minimised, violation).
            initial: starting vectors (e.g. the evaluated front), at least one.
            rng: the random generator.
        """
        seen: dict[tuple, int] = {}
        pool_x: list[np.ndarray] = []

        def remember(vectors: np.ndarray) -> np.ndarray:
            fresh = []
            for vector in vectors:
                key = tuple(vector)
                if key not in seen:
                    seen[key] = len(pool_x)
                    pool_x.append(vector)
                    fresh.append(vector)
            return np.array(fresh, dtype=np.int64).reshape(-1, vectors.shape[1])

        population = remember(self.space.canonical_vectors(initial))
        if len(population) < self.population_size:
            levels = [len(v) for v in self.space.choices()]
            extra = np.stack([rng.integers(count, size=self.population_size) for count in levels], axis=1)
            population = np.concatenate([population, remember(self.space.canonical_vectors(extra))])
        objectives, violation = evaluate(population)
        pool_f, pool_v = [objectives], [violation]
        for _ in range(self.generations):
            ranks, crowding = rank_and_crowding(objectives, violation)
            children = self.generate_children(rng, population, ranks, crowding, self.population_size)
            children = remember(self.space.canonical_vectors(children))
            if len(children) == 0:
                continue
            child_f, child_v = evaluate(children)
            pool_f.append(child_f)
            pool_v.append(child_v)
            merged_x = np.concatenate([population, children])
            merged_f = np.concatenate([objectives, child_f])
            merged_v = np.concatenate([violation, child_v])
            keep = self.select_elite(merged_f, merged_v, self.population_size)
            population, objectives, violation = merged_x[keep], merged_f[keep], merged_v[keep]
        return np.array(pool_x), np.concatenate(pool_f), np.concatenate(pool_v)
