"""Time supernet training on 1 and on N processes (``torchrun``), the same recipe and data.

Each count runs ``optnas supernet train`` in fresh processes, as a user starts it: one process
with ``python -m optnas``, N with ``python -m torch.distributed.run --nproc_per_node N -m optnas``
(gloo on the CPU, NCCL with ``--device cuda``, one GPU per process). The figure compared is the
command's own ``seconds_per_epoch`` (training only: start-up, data loading and validation are
left out), the median over ``--repeats`` runs; the wall time of the whole command is printed
beside it. The speed-up is 1-process seconds over N-process seconds per epoch: on a machine
whose cores one process already keeps busy (``--threads``), N processes on the CPU share the
same cores and no speed-up is to be expected; on N GPUs it is the figure that matters.

Run as ``python benchmarks/bench_ddp.py [--procs 1,2] [--device cpu] [--epochs 2] [--repeats 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _train(n: int, args: argparse.Namespace, out: Path) -> tuple[float, float, dict]:
    """Run ``optnas supernet train`` on ``n`` processes; return its seconds per epoch, wall seconds and summary."""
    launcher = [sys.executable, "-m", "optnas"] if n == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n), "-m", "optnas"]
    command = [*launcher, "supernet", "train", "--dataset", args.dataset, "--epochs", str(args.epochs),
               "--batch-size", str(args.batch_size), "--device", args.device, "--out", str(out)]
    if args.data:
        command += ["--data", args.data]
    if args.threads:
        command += ["--threads", str(args.threads)]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    wall = time.perf_counter() - start
    if result.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    return summary["seconds_per_epoch"], wall, summary


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", default="1,2", help="process counts, comma-separated (1 first: the baseline)")
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, one GPU per process)")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data", default=None, help="folder of the dataset files")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (half of them the largest alone)")
    parser.add_argument("--batch-size", type=int, default=64, help="global batch (a multiple of every count)")
    parser.add_argument("--threads", type=int, default=None, help="--threads of each process [default: shared]")
    parser.add_argument("--repeats", type=int, default=1, help="runs per count (the median is reported)")
    args = parser.parse_args(argv)
    counts = [int(count) for count in args.procs.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for n in counts:
            runs = [_train(n, args, Path(folder) / f"p{n}-{repeat}.pth") for repeat in range(args.repeats)]
            summary = runs[-1][2]
            rows.append({"processes": n, "seconds_per_epoch": statistics.median(run[0] for run in runs),
                         "wall_seconds": statistics.median(run[1] for run in runs),
                         "top1_largest": summary["top1_largest"], "top1_smallest": summary["top1_smallest"]})
    base = rows[0]["seconds_per_epoch"]
    print(f"supernet train, {args.dataset}, {args.epochs} epochs, batch {args.batch_size}, device {args.device}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    print(f"{'processes':>9s} {'s/epoch':>8s} {'speed-up':>8s} {'wall s':>7s} {'top1 largest':>12s} {'smallest':>8s}")
    for row in rows:
        row["speed_up"] = base / row["seconds_per_epoch"]
        print(f"{row['processes']:9d} {row['seconds_per_epoch']:8.2f} {row['speed_up']:8.2f} "
              f"{row['wall_seconds']:7.1f} {row['top1_largest']:12.1f} {row['top1_smallest']:8.1f}")
    return rows


if __name__ == "__main__":
    main()
