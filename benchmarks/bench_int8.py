"""Float against int8 for the Pareto set of a digits search, each network trained, then exported.

Runs a search (the README's quick-start settings unless told otherwise), chooses every
network of its feasible Pareto set with ``optnas select``, trains each with ``optnas train``
and exports it with ``optnas export --int8``; prints, per network and in summary, the test
top1 in float and int8, the drop, the int8 file's size and latency relative to the float
file's (onnxruntime, 1 thread), and the share of the set that loses at most 1 point.

    python benchmarks/bench_int8.py [--work DIR] [--epochs 15] [--search-args "..."]
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

import optuna

QUICK_START = ("--supernet-epochs 7 --lr 16 --ur 32 --rstep 8 --n-doe 10 --iterations 2 --n-iter 4 --n-epochs 0 "
               "--sec-obj macs")


def optnas(*args: str) -> None:
    """Run one optnas command, failing loudly."""
    subprocess.run([sys.executable, "-m", "optnas.cli", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench-int8"))
    parser.add_argument("--epochs", type=int, default=15, help="optnas train epochs per network")
    parser.add_argument("--search-args", default=QUICK_START, help="options of the search")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{args.work / 'int8.db'}"
    name = "int8-bench"
    if name not in optuna.get_all_study_names(url):
        optnas("search", "--storage", url, "--study-name", name, "--save", str(args.work / "run"), "--quiet",
               *shlex.split(args.search_args))
    size = len(optuna.load_study(study_name=name, storage=url).best_trials)
    chosen = args.work / "chosen"
    optnas("select", "--storage", url, "--study-name", name, "-n", str(size), "--save", str(chosen))
    rows = []
    for folder in sorted(chosen.glob("net-*")):
        if not (folder / "export-onnx-int8.json").is_file():
            optnas("train", str(folder), "--epochs", str(args.epochs), "--quiet")
            optnas("export", str(folder), "--format", "onnx", "--int8")
        report = json.loads((folder / "export-onnx-int8.json").read_text())
        rows.append({"network": folder.name, **{key: report[key] for key in (
            "top1_float", "top1_int8", "drop", "argmax_agreement", "size_ratio", "latency_ms_float",
            "latency_ms_int8")}})
    print(f"{'network':<22} {'top1 float':>10} {'top1 int8':>9} {'drop':>6} {'agree':>6} {'size':>6} "
          f"{'float ms':>8} {'int8 ms':>8}")
    for row in rows:
        print(f"{row['network']:<22} {row['top1_float']:>10.2f} {row['top1_int8']:>9.2f} {row['drop']:>6.2f} "
              f"{row['argmax_agreement']:>6.3f} {row['size_ratio']:>6.3f} {row['latency_ms_float']:>8.3f} "
              f"{row['latency_ms_int8']:>8.3f}")
    within = sum(row["drop"] <= 1.0 for row in rows)
    print(json.dumps({
        "networks": len(rows),
        "drop_at_most_1_point": f"{within}/{len(rows)}",
        "max_drop": max(row["drop"] for row in rows),
        "max_size_ratio": max(row["size_ratio"] for row in rows),
        "median_latency_ratio": statistics.median(row["latency_ms_int8"] / row["latency_ms_float"] for row in rows),
        "max_latency_ratio": max(row["latency_ms_int8"] / row["latency_ms_float"] for row in rows),
    }, indent=2))


if __name__ == "__main__":
    main()
