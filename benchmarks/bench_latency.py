"""Latency tables against end-to-end measurement, and a search bounded by ``--lmax`` checked by timing.

Part 1 builds a latency table on this machine (onnxruntime, 1 thread by default) for the
searched resolutions, draws ``--n`` random subnets (a seed other than the table's
calibration networks'), times each end to end in the same runtime and reports, over them:
Spearman's rank correlation and the mean absolute percentage error (MAPE) of the table's
prediction against the measurement, and for comparison the Spearman correlation of MACs and
of params with the measured latency (what a proxy gives).

Part 2 runs a digits search with ``--sec-obj latency --lmax`` on that table, times every
network of its feasible Pareto set (what ``optnas select`` chooses from) and every other
feasible trial end to end, and reports the share that exceeds the bound.

    python benchmarks/bench_latency.py [--lr 32 --ur 224 --rstep 32] [--n 100] [--threads 1] [--work DIR]
        [--only table|search]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
from scipy.stats import spearmanr

from optnas.latency.build import build_table
from optnas.latency.layers import LayerSpace
from optnas.latency.measure import Measurer
from optnas.latency.table import LatencyTable
from optnas.networks.costs import profile
from optnas.spaces import MobileNetV3Space

N_CLASSES = 10


def table_against_measurement(args: argparse.Namespace, lut: Path) -> dict[str, float]:
    """Part 1: predicted vs measured latency of random subnets over the searched resolutions."""
    space = MobileNetV3Space.from_range(args.lr, args.ur, args.rstep)
    started = time.perf_counter()
    build_table(lut, LayerSpace(resolutions=tuple(space.resolutions), n_classes=N_CLASSES), runtime=args.runtime,
                threads=args.threads, progress=True, work_dir=args.work / "layers")
    print(f"table: {time.perf_counter() - started:.0f} s to build (or resume) {lut}", flush=True)
    table = LatencyTable.load(lut)
    subnets = space.sample(np.random.default_rng(args.seed + 1000), args.n)
    predicted, measured, macs, params = [], [], [], []
    measurer = Measurer(N_CLASSES, runtime=args.runtime, threads=args.threads)
    started = time.perf_counter()
    for index, subnet in enumerate(subnets):
        timing = measurer.measure(subnet)
        predicted.append(table.predict(subnet))
        measured.append(timing["latency_ms"])
        figures = profile(subnet, N_CLASSES)
        macs.append(figures["macs"])
        params.append(figures["params"])
        print(f"  {index + 1}/{len(subnets)} r={subnet['r']} predicted {predicted[-1]:.3f} ms, "
              f"measured {measured[-1]:.3f} ms (p90 {timing['p90_ms']:.3f})", flush=True)
    print(f"measurement: {time.perf_counter() - started:.0f} s for {len(subnets)} networks", flush=True)
    predicted, measured = np.array(predicted), np.array(measured)
    errors = np.abs(predicted - measured) / measured
    return {
        "n": len(subnets),
        "spearman_table": float(spearmanr(predicted, measured).statistic),
        "mape_percent": float(100 * errors.mean()),
        "median_ape_percent": float(100 * np.median(errors)),
        "max_ape_percent": float(100 * errors.max()),
        "spearman_macs": float(spearmanr(macs, measured).statistic),
        "spearman_params": float(spearmanr(params, measured).statistic),
        "measured_ms_range": [float(measured.min()), float(measured.max())],
        "overhead_ms": table.overhead_ms,
    }


def bounded_search(args: argparse.Namespace, lut: Path, work: Path) -> dict[str, float]:
    """Part 2: the share of a --lmax search's feasible Pareto set whose measured latency exceeds the bound."""
    table = LatencyTable.load(lut)
    space = MobileNetV3Space(resolutions=[32])
    fastest, _ = table.fastest([1.0], [32])
    slowest = table.predict(space.largest())
    bound = fastest + args.bound_fraction * (slowest - fastest)
    url = f"sqlite:///{work / 'bounded.db'}"
    name = f"lmax-{time.strftime('%H%M%S')}"
    command = [sys.executable, "-m", "optnas.cli", "search", "--storage", url, "--study-name", name,
               "--latency-table", str(lut), "--sec-obj", "latency", "--lmax", f"{bound:.6f}",
               "--supernet-epochs", "1", "--n-doe", "10", "--iterations", "3", "--n-iter", "5",
               "--n-epochs", "0", "--save", str(work / "run"), "--quiet"]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    print(f"search: {time.perf_counter() - started:.0f} s", flush=True)
    study = optuna.load_study(study_name=name, storage=url)
    front = {t.number for t in study.best_trials}
    feasible = [t for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)) if t.user_attrs["feasible"]]
    measurer = Measurer(N_CLASSES, runtime=args.runtime, threads=args.threads)
    over = {}
    for trial in feasible:
        timing = measurer.measure(trial.user_attrs["subnet"])
        over[trial.number] = timing["latency_ms"] > bound
        print(f"  trial {trial.number}{' (Pareto)' if trial.number in front else ''}: predicted "
              f"{trial.user_attrs['latency']:.3f} ms, measured {timing['latency_ms']:.3f} ms "
              f"(p90 {timing['p90_ms']:.3f}), bound {bound:.3f}", flush=True)
    on_front = [over[number] for number in front]
    return {"bound_ms": bound, "pareto_size": len(front), "pareto_over_bound": int(sum(on_front)),
            "pareto_share_over_bound_percent": 100.0 * statistics.mean(on_front) if on_front else 0.0,
            "feasible_trials": len(feasible), "feasible_over_bound": int(sum(over.values())),
            "feasible_share_over_bound_percent": 100.0 * statistics.mean(over.values()) if over else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=int, default=32, help="lowest resolution")
    parser.add_argument("--ur", type=int, default=224, help="highest resolution")
    parser.add_argument("--rstep", type=int, default=32, help="resolution step")
    parser.add_argument("--n", type=int, default=100, help="random subnets timed end to end")
    parser.add_argument("--runtime", default="onnxruntime", choices=("onnxruntime", "torch"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bound-fraction", type=float, default=0.4,
                        help="--lmax between the table's fastest (0) and the largest network (1)")
    parser.add_argument("--work", type=Path, default=Path("bench-latency"), help="folder for tables and studies")
    parser.add_argument("--only", choices=("table", "search"), default=None,
                        help="part 1 alone, or part 2 alone on the table part 1 wrote")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    lut = args.work / f"lut-{args.runtime}-t{args.threads}-r{args.lr}-{args.ur}-{args.rstep}.json"
    results = {}
    if args.only != "search":
        results["table_vs_measured"] = table_against_measurement(args, lut)
    if args.only != "table":
        # The search runs at resolution 32 (digits), which the table covers when --lr is 32.
        results["bounded_search"] = bounded_search(args, lut, args.work)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
