"""The space-filling initial design of a surrogate search."""

from __future__ import annotations

import numpy as np

from optnas.spaces import SearchSpace


def initial_design(space: SearchSpace, n: int, seed: int, corners: bool = True) -> np.ndarray:
    """Return ``n`` distinct canonical gene vectors: the smallest, the largest, then a Latin design.

    Every gene's levels appear in (nearly) equal numbers across the design; a gene with more
    levels than the design has points gets one point in each of ``n`` equal strata of its
    levels. Each gene is permuted independently, which spreads a small design over the whole
    space better than uniform draws.
    Architectures holding unused operations (see ``SearchSpace.reduced``) are left out: the
    design's few evaluations go to distinct functions.

    Args:
        space: the search space.
        n: the number of architectures.
        seed: the seed of the permutations.
        corners: start with the smallest and the largest architecture (the two ends of a NAS
            front); without, the whole design is Latin (a user's own parameters have no ends
            known to be good).
    """
    rng = np.random.default_rng([seed, 0x00D0E])
    levels = [len(values) for values in space.choices()]
    design = [space.to_vector(space.smallest()), space.to_vector(space.largest())][:n] if corners else []
    seen = {tuple(vector) for vector in design}
    attempts = 0
    while len(design) < n and attempts < 100:
        attempts += 1
        batch = np.stack([rng.permutation(_latin_levels(rng, n, count)) for count in levels], axis=1)
        batch = space.canonical_vectors(batch)
        for vector in batch[~space.redundant(batch)]:
            if len(design) < n and tuple(vector) not in seen:
                seen.add(tuple(vector))
                design.append(vector)
    return np.array(design[:n], dtype=np.int64).reshape(len(design[:n]), len(levels))


def _latin_levels(rng: np.random.Generator, n: int, count: int) -> np.ndarray:
    """``n`` levels of a gene with ``count`` levels, spread over all of them (unordered)."""
    if count <= n:
        return np.arange(n) % count
    # The first n levels alone would leave the rest of a fine grid (a float's) unexplored.
    return ((np.arange(n) + rng.random(n)) * count / n).astype(np.int64)
