"""A search space made of Optuna distributions, as gene vectors for the surrogate step.

Every parameter becomes a gene with a finite, ordered list of values (its *levels*):

* ``CategoricalDistribution``: its choices; the predictors see them one-hot, or, when every
  choice is a number (``[16, 32, 64]``), as one ordered column (the choice's rank);
* ``IntDistribution``: every value ``low, low+step, … high`` when there are at most ``levels``
  of them, else ``levels`` values spread evenly (geometrically with ``log=True``) over the
  range, rounded onto the step grid;
* ``FloatDistribution``: ``levels`` values spread evenly (geometrically with ``log=True``)
  from ``low`` to ``high`` — or every value of its ``step`` grid when that has at most
  ``levels`` values, else ``levels`` of them spread over it.

Unordered categories that share their choices (an operation per layer or per edge of a
cell) are also seen through their totals: per shared choice, the fraction of those
parameters that take it. Such parameters are often slots of one kind whose totals matter
(how many convolutions a network holds sets its size and much of its accuracy), which a
kernel over one-hot columns would need many trials to learn.

So integers and categories are searched exactly, and floats (and very long integer ranges)
on a grid: the surrogate never proposes a value between two levels. A trial whose parameter
lies off the grid (sampled by another sampler, or enqueued) is read as its nearest level.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from optnas.optuna_private import holds
from optnas.spaces.base import SearchSpace

DEFAULT_LEVELS = 64


class OptunaSpace(SearchSpace):
    """The genes of a dict of Optuna distributions (parameters sorted by name).

    Here a *subnet* and a *params* dict are the same thing: one value per parameter.

    Args:
        distributions: parameter name → distribution (categorical, int or float).
        levels: the most values a numeric parameter is searched on (see the module).
    """

    name = "optuna"
    trains_networks = False

    def __init__(self, distributions: dict[str, BaseDistribution], levels: int = DEFAULT_LEVELS) -> None:
        if levels < 2:
            raise ValueError(f"levels must be at least 2, got {levels}")
        if not distributions:
            raise ValueError("the search space is empty")
        self._distributions = {name: distributions[name] for name in sorted(distributions)}
        self.levels = levels
        self._values: list[list[Any]] = []
        self._features: list[np.ndarray] = []
        self._ordered: list[np.ndarray | None] = []
        self._one_hot: list[bool] = []
        for name, distribution in self._distributions.items():
            values, position = _levels(name, distribution, levels)
            self._values.append(values)
            self._one_hot.append(position is None and not _numeric(values))
            if position is None and not self._one_hot[-1]:
                # Numbers as choices are ordered: one column, each choice at its rank.
                ranks = np.argsort(np.argsort(np.array(values, dtype=float)))
                self._features.append((ranks / max(len(values) - 1, 1))[:, None].astype(float))
                self._ordered.append(None)
            elif position is None:
                # Categories: one-hot (a single column for two choices).
                eye = np.eye(len(values))
                self._features.append(eye[:, 1:] if len(values) == 2 else eye)
                self._ordered.append(None)
            else:
                span = position.max() - position.min()
                self._features.append(((position - position.min()) / (span if span > 0 else 1.0))[:, None])
                self._ordered.append(position)
        self._gene_lists = (tuple(self._distributions), tuple(tuple(v) for v in self._values))
        # Per set of categories sharing their choices, the levels whose totals are features.
        self._totals = [(genes, _total_levels(len(self._values[genes[0]])))
                        for genes in _shared_choices(self._values, self._one_hot)]
        # Feature groups of those totals, one per level, after the genes' own groups.
        self._total_groups = sum(len(levels) for _, levels in self._totals)

    def distributions(self) -> dict[str, BaseDistribution]:
        return dict(self._distributions)

    def decode(self, params: dict[str, Any]) -> dict[str, Any]:
        return dict(params)

    def encode(self, subnet: dict[str, Any]) -> dict[str, Any]:
        return dict(subnet)

    def canonical(self, subnet: dict[str, Any]) -> dict[str, Any]:
        return self.from_vector(self.to_vector(subnet))

    def smallest(self) -> dict[str, Any]:
        return {name: values[0] for name, values in zip(self._distributions, self._values)}

    def largest(self) -> dict[str, Any]:
        return {name: values[-1] for name, values in zip(self._distributions, self._values)}

    def contains(self, params: dict[str, Any]) -> bool:
        """Whether ``params`` gives every parameter of the space a value its distribution holds.

        Args:
            params: trial parameters.
        """
        return all(name in params and holds(distribution, params[name])
                   for name, distribution in self._distributions.items())

    def to_vector(self, subnet: dict[str, Any]) -> np.ndarray:
        vector = np.empty(len(self._values), dtype=np.int64)
        for gene, (name, values) in enumerate(zip(self._distributions, self._values)):
            value = subnet[name]
            position = self._ordered[gene]
            if position is None:
                vector[gene] = _index_of(values, value)
            else:
                distribution = self._distributions[name]
                target = math.log(value) if getattr(distribution, "log", False) else float(value)
                vector[gene] = int(np.argmin(np.abs(position - target)))
        return vector

    def from_vector(self, vector: np.ndarray) -> dict[str, Any]:
        return {name: values[int(index)] for name, values, index in zip(self._distributions, self._values, vector)}

    def canonical_vectors(self, vectors: np.ndarray) -> np.ndarray:
        # Every vector of levels is a distinct, valid point.
        return np.asarray(vectors, dtype=np.int64).reshape(len(vectors), len(self._values))

    def feature_groups(self) -> tuple[tuple[int, ...], tuple[bool, ...]]:
        """The group of every feature column, and whether each group is a one-hot category.

        Groups ``0 .. n_genes-1`` are the genes' own columns; every total of a shared choice
        (see :meth:`features`) is a numeric group of its own after them.
        """
        groups = [gene for gene, table in enumerate(self._features) for _ in range(table.shape[1])]
        groups += range(len(self._features), len(self._features) + self._total_groups)
        return tuple(groups), tuple(self._one_hot) + (False,) * self._total_groups

    def gridded_groups(self) -> tuple[bool, ...]:
        """Per feature group (see :meth:`feature_groups`), whether it is a parameter searched on a
        grid of its range rather than on each of its values: a float without a short step grid,
        or an integer range longer than ``levels``."""
        return tuple(_gridded(d, self.levels) for d in self._distributions.values()) + (False,) * self._total_groups

    def features(self, vectors: np.ndarray) -> np.ndarray:
        """Predictor inputs: numeric genes scaled to [0, 1] (log scale if log), categories one-hot,
        then the totals of shared choices.

        For every set of unordered categories with the same choices, one column per choice
        (one in all for two choices): the fraction of the set's parameters that take it.

        Args:
            vectors: array of shape (n, n_genes) of gene indices.
        """
        vectors = np.asarray(vectors, dtype=np.int64).reshape(-1, len(self._values))
        columns = [table[vectors[:, gene]] for gene, table in enumerate(self._features)]
        for genes, levels in self._totals:
            columns += [(vectors[:, genes] == level).mean(axis=1)[:, None] for level in levels]
        return np.hstack(columns)


def _levels(name: str, distribution: BaseDistribution, levels: int) -> tuple[list[Any], np.ndarray | None]:
    """A gene's values and, for numeric genes, their positions (log of the value if log)."""
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices), None
    if isinstance(distribution, IntDistribution):
        low, high, step, log = distribution.low, distribution.high, distribution.step, distribution.log
        count = _count(distribution)
        if count <= levels:
            values = [low + i * step for i in range(count)]
        elif log:
            grid = np.geomspace(low, high, levels)
            values = sorted({int(min(high, max(low, round(v)))) for v in grid})
        else:
            index = np.unique(np.round(np.linspace(0, count - 1, levels)).astype(np.int64))
            values = [int(low + i * step) for i in index]
        positions = np.log(np.array(values, dtype=float)) if log else np.array(values, dtype=float)
        return values, positions
    if isinstance(distribution, FloatDistribution):
        low, high, step, log = distribution.low, distribution.high, distribution.step, distribution.log
        if step is not None:
            count = _count(distribution)
            index = np.arange(count) if count <= levels else np.unique(np.round(np.linspace(0, count - 1, levels)))
            values = [float(min(high, low + float(i) * step)) for i in index]
        elif high == low:
            values = [float(low)]
        elif log:
            values = [float(v) for v in np.clip(np.geomspace(low, high, levels), low, high)]
        else:
            values = [float(v) for v in np.clip(np.linspace(low, high, levels), low, high)]
        positions = np.log(np.array(values)) if log else np.array(values)
        return values, positions
    raise ValueError(f"parameter {name!r}: unsupported distribution {type(distribution).__name__}")


def _count(distribution: IntDistribution | FloatDistribution) -> int:
    """The values of a stepped numeric distribution."""
    if isinstance(distribution, IntDistribution):
        return (distribution.high - distribution.low) // distribution.step + 1
    return round((distribution.high - distribution.low) / distribution.step) + 1


def _gridded(distribution: BaseDistribution, levels: int) -> bool:
    """Whether a parameter is searched on a grid of its range (see the module)."""
    if isinstance(distribution, FloatDistribution) and distribution.step is None:
        return distribution.high > distribution.low
    return isinstance(distribution, (IntDistribution, FloatDistribution)) and _count(distribution) > levels


def _shared_choices(values: list[list[Any]], one_hot: list[bool]) -> list[tuple[int, ...]]:
    """The sets of two or more one-hot genes with the same choices (same values, same types)."""
    sets: dict[tuple, list[int]] = {}
    for gene, (choices, is_one_hot) in enumerate(zip(values, one_hot)):
        if is_one_hot:
            sets.setdefault(tuple((type(c), repr(c)) for c in choices), []).append(gene)
    return [tuple(genes) for genes in sets.values() if len(genes) >= 2]


def _total_levels(count: int) -> range:
    """The choices of a shared set whose totals are features: every one, only the last of two
    (the two totals add up to 1)."""
    return range(1, 2) if count == 2 else range(count)


def _numeric(values: list[Any]) -> bool:
    """Whether categorical choices are distinct numbers (booleans are not), so have an order."""
    return (all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            and len(set(values)) == len(values) and all(math.isfinite(v) for v in values))


def _index_of(values: list[Any], value: Any) -> int:
    # By type and value: Optuna's categorical choices may mix 1, 1.0 and True.
    for index, choice in enumerate(values):
        if type(choice) is type(value) and choice == value:
            return index
    for index, choice in enumerate(values):
        if choice == value:
            return index
    raise ValueError(f"{value!r} is not one of the choices {values}")
