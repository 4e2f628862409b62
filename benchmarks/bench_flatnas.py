"""FlatNAS on digits: mean corruption error of a top1_robust search's Pareto set vs plain top1.

Trains a supernet (4 epochs), runs two NSGA-II searches with the same seed (so their initial
designs are the same architectures), one on (top1_robust, macs) and one on (top1, macs), then
`optnas ood` on the robust search's feasible Pareto set and on the plain search's 4 most
accurate networks, and prints both tables. About 25 minutes on 2 busy cores.

    python benchmarks/bench_flatnas.py --out /tmp/flatnas [--n-images 150]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna


def _cli(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "optnas.cli", *args], capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(result.stderr)
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n-images", default="150", help="test images per corruption and severity")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    supernet, db = args.out / "supernet.pth", f"sqlite:///{args.out / 'exp.db'}"
    if not supernet.exists():
        _cli("supernet", "train", "--dataset", "digits", "--epochs", "4", "--out", str(supernet))
    common = ["--storage", db, "--supernet-path", str(supernet), "--n-doe", "8", "--iterations", "2",
              "--n-iter", "4", "--n-epochs", "1", "--sec-obj", "macs", "--sampler", "nsga2",
              "--save", str(args.out / "run"), "--save-ckpt", "--quiet"]
    names = optuna.get_all_study_names(db) if (args.out / "exp.db").exists() else []
    if "robust" not in names:
        _cli("search", *common, "--study-name", "robust", "--first-obj", "top1_robust", "--alpha", "0.5",
             "--sigma", "0.05", "--flat-samples", "5")
    if "plain" not in names:
        _cli("search", *common, "--study-name", "plain", "--first-obj", "top1")
    chosen = {
        "robust": [row["number"] for row in json.loads(_cli("trials", "--study-name", "robust", "--storage", db,
                                                            "--pareto", "--format", "json"))],
        "plain": [row["number"] for row in sorted(
            json.loads(_cli("trials", "--study-name", "plain", "--storage", db, "--format", "json")),
            key=lambda row: (-row.get("top1", -1), row["number"])) if "duplicate_of" not in row][:4],
    }
    for name, numbers in chosen.items():
        study = optuna.load_study(study_name=name, storage=db)
        print(f"\n{name}: trials {numbers}")
        print("trial   top1   macs  robustness  clean err    mCE")
        gaps, mces = [], []
        for number in numbers:
            key = f"ood:trial:{number:05d}"
            if key not in study.user_attrs:
                _cli("ood", "--study-name", name, "--storage", db, "--trial", str(number), "--n-images",
                     args.n_images, "--quiet")
            result = optuna.load_study(study_name=name, storage=db).user_attrs[key]
            attrs = study.trials[number].user_attrs
            print(f"{number:5d} {attrs['top1']:6.2f} {attrs['macs']:6.3f} {attrs.get('robustness', float('nan')):11.2f}"
                  f" {result['clean_error']:10.2f} {result['mce']:6.2f}")
            mces.append(result["mce"])
            gaps.append(result["mce"] - result["clean_error"])
        print(f"mean mCE {np.mean(mces):.2f} %, mean mCE - clean error {np.mean(gaps):.2f} points")


if __name__ == "__main__":
    main()
