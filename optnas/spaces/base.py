"""The interface every search space implements."""

from __future__ import annotations

import abc
import copy
import dataclasses
import json
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution


@dataclasses.dataclass(frozen=True)
class SpaceOptions:
    """The search options a space is built from, named as the search's options are.

    Args:
        min_resolution: the lowest input resolution.
        max_resolution: the highest input resolution.
        resolution_step: the step between resolutions.
        width_mult: the supernet's width multiplier.
    """

    min_resolution: int = 32
    max_resolution: int = 32
    resolution_step: int = 4
    width_mult: float = 1.0


class Subnet(dict):
    """A canonical subnet that knows its space: the JSON object itself, and :attr:`space`.

    A dict, so that it dumps to the same JSON, indexes and compares as the plain object did
    (the space is not one of its keys). Spaces build it (:meth:`SearchSpace.canonical` and
    every method returning subnets), :func:`optnas.spaces.as_subnet` builds it from JSON
    whose space is unknown; nothing changes one in place.

    Args:
        values: the canonical values.
        space: the space they are canonical in.
    """

    def __init__(self, values: dict[str, Any], space: SearchSpace) -> None:
        super().__init__(values)
        self.space = space

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickles and copies as values and space; the parts cached below are derived again.
        return (Subnet, (dict(self), self.space))

    def __deepcopy__(self, memo: dict[int, Any]) -> Subnet:
        # A space does not change once built: copies share it.
        return Subnet(copy.deepcopy(dict(self), memo), self.space)

    @property
    def has_exits(self) -> bool:
        """Whether the network has early exits (its space's :attr:`SearchSpace.has_exits`)."""
        return self.space.has_exits

    def backbone(self) -> Subnet:
        """Return the network without its early exits: the mobilenetv3 part, or itself without exits."""
        if not self.has_exits:
            return self
        if "_backbone" not in self.__dict__:
            # Every cost of an early-exit network reads its backbone: derived once per subnet.
            self._backbone = self.space.backbone_of(self)
        return self._backbone

    @property
    def exit_stages(self) -> tuple[int, ...]:
        """The 0-based backbone stages followed by an intermediate exit, in order (none without exits)."""
        if "_exit_stages" not in self.__dict__:
            self._exit_stages = self.space.exit_stages_of(self)
        return self._exit_stages

    @property
    def n_exits(self) -> int:
        """The number of intermediate exits (the final one excluded; 0 without exits)."""
        return len(self.exit_stages)

    @property
    def key(self) -> str:
        """A string equal for equal networks (the canonical JSON, keys sorted)."""
        return json.dumps(self, sort_keys=True)


class SearchSpace(abc.ABC):
    """Genes of one architecture family, their Optuna distributions and the `net.subnet` form.

    A *subnet* is the JSON object saved as ``net.subnet`` (in its canonical form, a
    :class:`Subnet`: every method here that returns one returns that); a *params* dict holds one value
    per gene, as Optuna trial parameters; a *vector* is the integer index of every gene's
    value, the encoding predictors learn from.
    """

    name: str = ""
    # What differs per space, read by the layers above instead of comparing space names (the
    # figures each space has are in optnas.figures).
    # Whether candidates are networks trained from a supernet (False: a table is looked up).
    trains_networks: bool = True
    # Whether architectures carry early exits (``exits``/``epsilon``, an expected cost).
    has_exits: bool = False
    # Whether its networks can be scored as deployed in int8 (``--int8``).
    supports_int8: bool = True
    # Datasets the space is defined for; None: every image dataset optnas reads.
    datasets: tuple[str, ...] | None = None

    @classmethod
    def from_options(cls, options: SpaceOptions) -> SearchSpace:
        """Build the space a search's options describe (``ValueError`` if impossible).

        Args:
            options: the options of the space.
        """
        return cls()

    @classmethod
    def n_classes(cls, dataset: str) -> int | None:
        """Return the class count the space fixes for a dataset (None: the dataset's own).

        Args:
            dataset: the dataset name.
        """
        return None

    @classmethod
    def for_subnet(cls, subnet: dict[str, Any]) -> SearchSpace:
        """Build the space of this kind that a subnet given alone belongs to (``ValueError`` if none).

        Args:
            subnet: a subnet of this kind, canonical or not.
        """
        return cls()

    @abc.abstractmethod
    def distributions(self) -> dict[str, BaseDistribution]:
        """Return the Optuna distribution of every gene, in a fixed order."""

    @abc.abstractmethod
    def decode(self, params: dict[str, Any]) -> Subnet:
        """Turn trial parameters into the canonical subnet.

        Args:
            params: one value per gene, as sampled by Optuna.
        """

    @abc.abstractmethod
    def encode(self, subnet: dict[str, Any]) -> dict[str, Any]:
        """Turn a subnet into trial parameters (the inverse of :meth:`decode`).

        Args:
            subnet: a subnet in this space.
        """

    def canonical(self, subnet: dict[str, Any]) -> Subnet:
        """Validate a subnet and return its canonical form (raises ``ValueError`` if invalid).

        A :class:`Subnet` of this very space is canonical already and comes back as it is.

        Args:
            subnet: a subnet in this space, canonical or not.
        """
        if isinstance(subnet, Subnet) and subnet.space is self:
            return subnet
        return Subnet(self._canonical_values(subnet), self)

    def _canonical_values(self, subnet: dict[str, Any]) -> dict[str, Any]:
        """Validate a subnet and return its canonical values (raises ``ValueError`` if invalid).

        Every space overrides this, or :meth:`canonical` itself where its subnets are plain
        dicts (a space of Optuna distributions, whose subnets are trial parameters).
        """
        raise NotImplementedError

    @abc.abstractmethod
    def smallest(self) -> Subnet:
        """Return the smallest architecture of the space."""

    @abc.abstractmethod
    def largest(self) -> Subnet:
        """Return the largest architecture of the space."""

    def backbone_of(self, subnet: Subnet) -> Subnet:
        """Return a canonical subnet without its early exits (see :meth:`Subnet.backbone`).

        Args:
            subnet: a canonical subnet of this space.
        """
        return subnet

    def exit_stages_of(self, subnet: Subnet) -> tuple[int, ...]:
        """Return the stages a canonical subnet has an intermediate exit after (see :attr:`Subnet.exit_stages`).

        Args:
            subnet: a canonical subnet of this space.
        """
        return ()

    def gene_names(self) -> list[str]:
        """Return the gene names in encoding order."""
        return list(self._genes()[0])

    def choices(self) -> list[list[Any]]:
        """Return the ordered list of allowed values of every gene."""
        return [list(values) for values in self._genes()[1]]

    def _genes(self) -> tuple[tuple[str, ...], tuple[tuple[Any, ...], ...]]:
        # A space does not change once built, and the surrogate decodes every offspring it
        # scores: the gene lists are derived from the distributions once, not on every call.
        genes = self.__dict__.get("_gene_lists")
        if genes is None:
            distributions = self.distributions()
            genes = (
                tuple(distributions),
                tuple(tuple(_distribution_values(d)) for d in distributions.values()),
            )
            self._gene_lists = genes
        return genes

    def to_vector(self, subnet: dict[str, Any]) -> np.ndarray:
        """Return the integer index encoding of a subnet (canonical first).

        Args:
            subnet: a subnet in this space.
        """
        params = self.encode(self.canonical(subnet))
        return np.array(
            [values.index(params[name]) for name, values in zip(*self._genes())],
            dtype=np.int64,
        )

    def from_vector(self, vector: np.ndarray) -> Subnet:
        """Return the canonical subnet of an integer index encoding.

        Args:
            vector: one integer index per gene, as from :meth:`to_vector`.
        """
        params = {
            name: values[int(index)]
            for name, values, index in zip(*self._genes(), vector)
        }
        return self.decode(params)

    def canonical_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """Return the canonical form of many gene vectors at once (rows of an int array).

        Args:
            vectors: array of shape (n, n_genes) of gene indices.
        """
        return np.array(
            [self.to_vector(self.from_vector(row)) for row in np.asarray(vectors)], dtype=np.int64
        ).reshape(len(vectors), len(self.gene_names()))

    def features(self, vectors: np.ndarray) -> np.ndarray:
        """Return the predictor inputs of gene vectors: the indices themselves by default.

        Spaces whose gene values have no order override this (e.g. with one-hot columns).

        Args:
            vectors: array of shape (n, n_genes) of gene indices.
        """
        return np.asarray(vectors, dtype=np.float64)

    def reduced(self, vectors: np.ndarray) -> np.ndarray:
        """Return, for each gene vector, the architecture computing the same function with nothing unused.

        Where it differs, the original holds operations whose output reaches nothing. The
        vectors themselves by default.

        Args:
            vectors: array of shape (n, n_genes) of gene indices.
        """
        return np.asarray(vectors, dtype=np.int64)

    def redundant(self, vectors: np.ndarray) -> np.ndarray:
        """Return which gene vectors hold unused operations (their :meth:`reduced` form differs).

        Args:
            vectors: array of shape (n, n_genes) of gene indices.
        """
        vectors = np.asarray(vectors, dtype=np.int64)
        return (self.reduced(vectors) != vectors).any(axis=1)

    def sample(self, rng: np.random.Generator, n: int) -> list[Subnet]:
        """Draw ``n`` architectures uniformly over the genes.

        Args:
            rng: the random generator.
            n: how many to draw.
        """
        choices = self.choices()
        return [
            self.from_vector(np.array([rng.integers(len(values)) for values in choices]))
            for _ in range(n)
        ]

    def key(self, subnet: dict[str, Any]) -> str:
        """Return a string that is equal for two encodings of the same network.

        Args:
            subnet: a subnet in this space.
        """
        return self.canonical(subnet).key


def _distribution_values(distribution: BaseDistribution) -> list[Any]:
    if hasattr(distribution, "choices"):
        return list(distribution.choices)
    step = getattr(distribution, "step", 1) or 1
    return list(range(distribution.low, distribution.high + 1, step))
