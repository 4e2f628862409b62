"""Surrogate sampler against Optuna's samplers on the MobileNetV3 space, digits, real evaluations.

Every sampler searches the same space with the same supernet (trained once here), scoring
candidates by weight inheritance and BN recalibration (``--n-epochs``, default 0, so a trial
takes about a second). Objectives: validation top1 and MACs. There is no true front, so the
figure is the hypervolume of (error %, MACs) against the fixed reference point the studies
record (100 % error, 1.1 × the largest network's MACs), as a fraction of that box.

    python benchmarks/bench_samplers_digits.py [--seeds 3] [--budgets 30 50] [--samplers ...]
        [--supernet-path FILE]   # reuse a supernet, e.g. to add a sampler to an earlier table
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import optuna
from bench_samplers import first_points, table_header, table_row

from optnas.config import SearchConfig
from optnas.data.datasets import load_dataset
from optnas.networks.costs import profile
from optnas.networks.supernet import build_supernet
from optnas.pareto import hypervolume_2d
from optnas.studies.search import start_search
from optnas.training.supernet import train_supernet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budgets", type=int, nargs="+", default=[30, 50])
    parser.add_argument("--samplers", nargs="+", default=["surrogate", "nsga2", "tpe", "gp", "random"])
    parser.add_argument("--supernet-epochs", type=int, default=3)
    parser.add_argument("--n-epochs", type=int, default=0)
    parser.add_argument("--supernet-path", type=Path, help="a trained supernet; default: train one here")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    budget = max(args.budgets)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        supernet_path = args.supernet_path or folder / "supernet.pth"
        if args.supernet_path is None:
            train_supernet(build_supernet(10, 1.0), load_dataset("digits", seed=0), epochs=args.supernet_epochs,
                           out_path=supernet_path, progress=False)
        base = SearchConfig(supernet_path=str(supernet_path), n_epochs=args.n_epochs, sec_obj="macs")
        reference = (100.0, 1.1 * profile(base.make_space().largest(), 10)["macs"])
        print(f"supernet: {args.supernet_path or f'{args.supernet_epochs} epochs'}; reference point {reference}")
        print(table_header(args.budgets))
        for sampler in args.samplers:
            fractions: dict[int, list[float]] = {b: [] for b in args.budgets}
            seconds = []
            for seed in range(args.seeds):
                config = SearchConfig(
                    **{**base.to_dict(), "sampler": sampler, "seed": seed, "n_doe": 10, "n_iter": 5,
                       "iterations": (budget - 10) // 5, "save": str(folder / f"run-{sampler}-{seed}")}
                ).validate()
                started = time.perf_counter()
                study = start_search(config, f"sqlite:///{folder / f'{sampler}-{seed}.db'}", progress=False)
                seconds.append(time.perf_counter() - started)
                for b in args.budgets:
                    area = hypervolume_2d(first_points(study, b), reference)
                    fractions[b].append(area / (reference[0] * reference[1]))
            print(table_row(sampler, fractions, seconds, decimals=4), flush=True)
    print("HV: median over seeds (min), fraction of the reference box; seconds: median per search")


if __name__ == "__main__":
    main()
