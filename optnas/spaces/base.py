"""The interface every search space implements."""

from __future__ import annotations

import abc
import dataclasses
import json
from pathlib import Path
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


class SearchSpace(abc.ABC):
    """Genes of one architecture family, their Optuna distributions and the `net.subnet` form.

    A *subnet* is the JSON object saved as ``net.subnet``; a *params* dict holds one value
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

    @abc.abstractmethod
    def distributions(self) -> dict[str, BaseDistribution]:
        """Return the Optuna distribution of every gene, in a fixed order."""

    @abc.abstractmethod
    def decode(self, params: dict[str, Any]) -> dict[str, Any]:
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

    @abc.abstractmethod
    def canonical(self, subnet: dict[str, Any]) -> dict[str, Any]:
        """Validate a subnet and return its canonical form (raises ``ValueError`` if invalid).

        Args:
            subnet: a subnet in this space, canonical or not.
        """

    @abc.abstractmethod
    def smallest(self) -> dict[str, Any]:
        """Return the smallest architecture of the space."""

    @abc.abstractmethod
    def largest(self) -> dict[str, Any]:
        """Return the largest architecture of the space."""

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

    def from_vector(self, vector: np.ndarray) -> dict[str, Any]:
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

    def sample(self, rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
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
        return json.dumps(self.canonical(subnet), sort_keys=True)

    def load(self, path: str | Path) -> dict[str, Any]:
        """Read a ``net.subnet`` file and return its canonical subnet.

        Args:
            path: the file to read.
        """
        path = Path(path)
        try:
            subnet = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"{path}: no such file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: not a JSON net.subnet file ({error})") from None
        try:
            return self.canonical(subnet)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None


def _distribution_values(distribution: BaseDistribution) -> list[Any]:
    if hasattr(distribution, "choices"):
        return list(distribution.choices)
    step = getattr(distribution, "step", 1) or 1
    return list(range(distribution.low, distribution.high + 1, step))
