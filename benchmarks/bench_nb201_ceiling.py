"""How much of NAS-Bench-201's true front a perfect predictor could reach, and with how many evaluations.

A search sees one training seed's accuracy per cell (``lookup`` draws it). This oracle knows,
for every cell, the mean accuracy of the table's *other* training seeds: an estimate of the
cell's quality as good as a predictor can hope for, and independent of the drawn value it
is scored on. It evaluates the k cells it ranks best at every model-size level (28 levels)
and reports the scaled hypervolume (as in ``bench_samplers.py``) against the number of
evaluations.

    python benchmarks/bench_nb201_ceiling.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import statistics

import numpy as np
from bench_samplers import REFERENCE, true_front

from optnas.pareto import hypervolume_2d
from optnas.spaces.nasbench201 import N_EDGES, OPERATIONS, _bench, lookup

PER_LEVEL = (1, 2, 3, 5, 10)


def _other_seeds_error(ops: tuple[str, ...], seed: int) -> float:
    """Mean error (%) of the cell's training seeds other than the one ``lookup`` draws."""
    bench = _bench("cifar10")
    choices = bench._dataset_properties.search_space["Op0"]
    accuracies = np.array(bench._dataset["".join(str(choices.index(op)) for op in ops)]["val_acc"])
    digest = hashlib.sha256(f"{seed}:{','.join(ops)}".encode()).digest()
    drawn = np.random.default_rng(int.from_bytes(digest[:8], "little")).integers(len(accuracies))
    return float(100.0 - np.delete(accuracies, drawn).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    results: dict[int, list[tuple[int, float]]] = {}
    for seed in range(args.seeds):
        cells = list(itertools.product(OPERATIONS, repeat=N_EDGES))
        figures = [lookup({"ops": list(ops)}, "cifar10", seed) for ops in cells]
        error = np.array([100.0 - f["top1"] for f in figures])
        size = np.array([f["params"] for f in figures])
        oracle = np.array([_other_seeds_error(ops, seed) for ops in cells])
        ideal, nadir, true_hv = true_front("cifar10", seed)
        for k in PER_LEVEL:
            chosen = np.concatenate([
                level[np.argsort(oracle[level], kind="stable")[:k]]
                for level in (np.flatnonzero(size == s) for s in np.unique(size))
            ])
            points = np.column_stack([error[chosen], size[chosen]])
            fraction = hypervolume_2d((points - ideal) / (nadir - ideal), REFERENCE) / true_hv
            results.setdefault(k, []).append((len(chosen), fraction))
    print(f"{'per level':>9s} {'evaluations':>11s} {'HV median (min)':>16s}")
    for k, rows in results.items():
        fractions = [f for _, f in rows]
        print(f"{k:9d} {rows[0][0]:11d} {statistics.median(fractions):9.3f} ({min(fractions):.3f})")


if __name__ == "__main__":
    main()
